"""An editor variant as explicit fields: the base method, RECT's share, the mitigation that revised it.

The CLI spells a variant as one word (``memit+rect``, ``memit+rect=0.2``, ``rome+sir``) and an
:class:`~ripple.editing.delta.EditDelta` records it the same way in ``method``; code reads the
fields, never the string::

    >>> v = Variant.parse("memit+rect=0.2")
    >>> v.base, v.rect, v.mitigation, v.name
    ('memit', 0.2, None, 'memit+rect')
    >>> Variant.parse("rome+sir").mitigation
    'sir'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ripple.errors import RippleError

DEFAULT_RECT = 0.4  # RECT's share kept when the variant says +rect with no share (the RECT paper's)


@dataclass(frozen=True)
class Variant:
    base: str  # the editor: rome, memit, alphaedit, ...
    rect: float | None = None  # RECT's kept share; None: no RECT
    mitigation: str | None = None  # the mitigation that revised the edit (sir); None: the plain edit

    @classmethod
    def parse(cls, name: str) -> Variant:
        """``base[+rect[=SHARE]][+MITIGATION]``; one-line errors for a bad share or a repeated part."""
        base, *parts = str(name).split("+")
        out = cls(base)
        for part in parts:
            key, eq, value = part.partition("=")
            if key == "rect" and out.rect is None:
                try:
                    share = float(value) if value else DEFAULT_RECT
                except ValueError:
                    raise RippleError(f"bad RECT share {value!r} in {name!r}; write e.g. memit+rect=0.4") from None
                out = replace(out, rect=share)
            elif key and not eq and key != "rect" and out.mitigation is None:
                out = replace(out, mitigation=key)
            else:
                raise RippleError(f"cannot read the variant {name!r}; write METHOD, METHOD+rect[=SHARE] or "
                                  "METHOD+MITIGATION (e.g. memit+rect=0.4, rome+sir)")
        return out

    @property
    def name(self) -> str:
        """The word an :class:`~ripple.editing.delta.EditDelta` records: ``base[+rect][+mitigation]``."""
        return self.base + ("+rect" if self.rect is not None else "") + (f"+{self.mitigation}" if self.mitigation else "")

    def with_rect(self, share: float | None) -> Variant:
        return replace(self, rect=share)

    def mitigated(self, mitigation: str) -> Variant:
        return replace(self, mitigation=mitigation)
