"""The page around the interactive pieces: ECharts and ripple's own script inlined once, data in
``<script type="application/json">`` blocks that no text inside can close.

>>> json_block("x", {"a": "</script><b>"}).count("</script>")
1
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from functools import lru_cache
from importlib import resources

from ripple.errors import RippleError

CSS = """
.rg{margin:1em 0 2em} .rg-controls{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:.9em;margin:.4em 0}
.rg-controls label{white-space:nowrap} .rg-controls input[type=search]{width:16em}
.rg-main{display:flex;gap:1em;align-items:flex-start} .rg-canvas{flex:1 1 auto;min-width:480px;height:640px;border:1px solid #d0d7de}
.rg-side{flex:0 0 330px;max-height:640px;overflow:auto;font-size:.85em}
.rg-side h3{font-size:1em;margin:.6em 0 .3em} .rg-side ol{padding-left:1.4em;margin:0}
.rg-side button{border:none;background:none;color:#0969da;cursor:pointer;text-align:left;padding:.1em 0;font:inherit}
.rg-detail table{font-size:1em;margin:.2em 0} .rg-status{color:#57606a;font-size:.85em}
.rg-glyph{display:inline-block;width:1.1em;text-align:center} .rc{width:100%;max-width:900px;height:380px;border:1px solid #d0d7de;margin:.5em 0 1.5em}
"""


def _vendor_dir():
    return resources.files("ripple.data") / "vendor"


@lru_cache(maxsize=1)
def echarts_js() -> str:
    """The ECharts copy ripple ships, checked against the sha256 recorded beside it."""
    meta = json.loads((_vendor_dir() / "vendor.json").read_text(encoding="utf-8"))["echarts"]
    data = (_vendor_dir() / meta["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise RippleError(f"ripple's copy of ECharts ({meta['file']}) does not match its sha256; reinstall ripple")
    return data.decode("utf-8")


@lru_cache(maxsize=1)
def ripple_js() -> str:
    """ripple's own script: the graph, the charts and the comparison page (ripple/interactive/ripple.js)."""
    return (resources.files("ripple.interactive") / "ripple.js").read_text(encoding="utf-8")


def scripts() -> str:
    """ECharts and ripple's script, each in one ``<script>`` (neither contains ``</script``)."""
    return f"<script>{echarts_js()}</script>\n<script>{ripple_js()}</script>"


def finite(value):
    """``value`` with every NaN or infinite float (at any depth) replaced by None: JSON has no NaN,
    and a chart draws None as a gap.

    >>> finite({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_block(element_id: str, data) -> str:
    """``data`` as JSON in a ``<script type="application/json">``: keys sorted, non-finite numbers
    as null (:func:`finite`), ``<`` written as ``\\u003c`` so that no string in it can end the block."""
    text = json.dumps(finite(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return f'<script type="application/json" id="{html.escape(element_id)}">{text.replace("<", chr(92) + "u003c")}</script>'


def page_head(title: str, css: str = "") -> str:
    """From ``<!DOCTYPE html>`` to ``<body>``: the title, the styles and the scripts."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{html.escape(title)}</title>"
            f"<style>{css}{CSS}</style>\n{scripts()}\n</head><body>\n")


def page(title: str, parts: list[str], css: str = "") -> str:
    """A whole self-contained page: the head, ``parts`` (HTML) in order, the end."""
    return page_head(title, css) + "\n".join(parts) + "\n</body></html>\n"
