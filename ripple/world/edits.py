"""A world edit as a value: which fact of the world a request rewrites.

Requests made from the world carry ``case_id = "subject|relation|new_object"`` (entity ids); this
is the one place that reads and writes that form, and the probe-item id of a world fact
(``"subject|relation|object"``).

>>> edit = WorldEdit.parse("person:100|born_in|city:45")
>>> edit.subject, edit.relation, edit.new
('person:100', 'born_in', 'city:45')
>>> edit.case_id, edit.fact_id("city:3")
('person:100|born_in|city:45', 'person:100|born_in|city:3')
>>> WorldEdit.parse("my own edit") is None
True
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from ripple.errors import RippleError

SEP = "|"


def slug(text: str) -> str:
    """An id-safe key: ``"São Paulo"`` -> ``"sao_paulo"``.

    >>> slug("São Paulo")
    'sao_paulo'
    """

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "_".join("".join(c if c.isalnum() else " " for c in ascii_text.lower()).split())


def fact_id(subject: str, relation: str, obj: str) -> str:
    """The id of a world fact (its probe item): ``subject|relation|object``."""
    return SEP.join((subject, relation, obj))


@dataclass(frozen=True)
class WorldEdit:
    """Rewrite the fact ``(subject, relation, ·)`` of the world to ``new`` (entity ids)."""

    subject: str
    relation: str
    new: str

    @classmethod
    def parse(cls, case_id) -> WorldEdit | None:
        """The world edit a case id names, or None when it is not of the form ``subject|relation|new``."""
        parts = str(case_id or "").split(SEP)
        return cls(*parts) if len(parts) == 3 and all(parts) else None

    @classmethod
    def of(cls, request) -> WorldEdit | None:
        """The world edit of a request (None for a request not made from the world)."""
        return cls.parse(request.case_id)

    @classmethod
    def require(cls, request_or_case_id) -> WorldEdit:
        """Like :meth:`of`, with a one-line error for a request that is not a world edit."""
        case_id = getattr(request_or_case_id, "case_id", request_or_case_id)
        edit = cls.parse(case_id)
        if edit is None:
            raise RippleError(f"edit case_id {case_id!r} is not 'subject|relation|new_object'; "
                              "make requests with ripple.editing.from_world.request_for or sample_edits")
        return edit

    @property
    def case_id(self) -> str:
        return fact_id(self.subject, self.relation, self.new)

    @property
    def fact(self) -> tuple[str, str]:
        """The rewritten fact's key: (subject, relation)."""
        return self.subject, self.relation

    def fact_id(self, obj: str) -> str:
        """The id of the fact ``(subject, relation, obj)`` (e.g. the edited fact's current object)."""
        return fact_id(self.subject, self.relation, obj)
