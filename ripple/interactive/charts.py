"""Curves and bars that hover to their values (ECharts, drawn by ripple/interactive/ripple.js).

>>> "ripple.lineChart" in line_chart("c", "t", "x", "y", [{"name": "a", "points": [[0, 1.0]]}])
True
"""

from __future__ import annotations

import html

from ripple.interactive.pages import json_block


def _chart(kind: str, element_id: str, data: dict, caption: str | None) -> str:
    eid = html.escape(element_id)
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure class="rcf"><div class="rc" id="{eid}" role="img" aria-label="{html.escape(data["title"])}"></div>'
            f"{cap}{json_block(f'{element_id}-data', data)}<script>ripple.{kind}(\"{eid}\");</script></figure>")


def line_chart(element_id: str, title: str, x_label: str, y_label: str, series: list[dict],
               caption: str | None = None, marks: list[dict] | None = None, y_log: bool = False,
               x_log: bool = False) -> str:
    """Curves: ``series`` is ``[{"name", "points": [[x, y], ...]}]`` (y None: a gap); ``marks`` are
    vertical lines ``{"x", "label"}`` (a threshold, a chosen budget). Hover shows every series'
    value at that x."""
    data = {"title": title, "x_label": x_label, "y_label": y_label, "series": series, "marks": marks or [],
            "y_log": y_log, "x_log": x_log}
    return _chart("lineChart", element_id, data, caption)


def bar_chart(element_id: str, title: str, categories: list[str], series: list[dict], y_label: str = "",
              caption: str | None = None) -> str:
    """Grouped bars: ``series`` is ``[{"name", "values": [...]}]``, one value per category (None: not measured)."""
    data = {"title": title, "categories": categories, "series": series, "y_label": y_label}
    return _chart("barChart", element_id, data, caption)
