"""Registries: editors, mitigations and GIE rankers are declared once, by name, in their own file.

A :class:`Registry` maps names to records. Built-in entries are imported on first use (the
``builtins`` module registers them), so declaring an entry never depends on import order, and
everything else (the session, the audit, stress, the CLI's help, the benchmarks) reads the
registry instead of naming the entries.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Shape:
...     name: str
...     sides: int
>>> shapes = Registry("shape")
>>> shapes.register(Shape("triangle", 3)).sides
3
>>> shapes.names()
('triangle',)
>>> shapes.get("square")
Traceback (most recent call last):
...
ripple.errors.RippleError: unknown shape 'square'; available: triangle
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from ripple.errors import RippleError

T = TypeVar("T")


class Registry(Generic[T]):
    """Records with a ``name`` attribute, by name; ``builtins`` names a module that registers the
    built-in ones when it is imported (loaded on the first look-up); ``unknown`` is the one-line
    error for a name that is not registered (``{kind}``, ``{name}`` and ``{available}`` filled in)."""

    def __init__(self, kind: str, builtins: str | None = None,
                 unknown: str = "unknown {kind} {name!r}; available: {available}"):
        self.kind = kind
        self._builtins = builtins
        self._unknown = unknown
        self._entries: dict[str, T] = {}

    def _load(self) -> None:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; a second entry of the same name is an error."""
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise RippleError(f"a {self.kind} needs a name of letters, digits, '_' or '-', got {name!r}")
        if name in self._entries:
            raise RippleError(f"a {self.kind} named {name!r} is registered already; choose another name")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register an example entry clean up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry called ``name``; a one-line error listing the available ones otherwise."""
        self._load()
        if name not in self._entries:
            known = ", ".join(self.names()) or "none yet"
            raise RippleError(self._unknown.format(kind=self.kind, name=name, available=known))
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(sorted(self._entries))

    def registered(self) -> tuple[str, ...]:
        """The names registered so far, without loading the built-in ones."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())
