"""Progress bars on stderr for long work (tqdm), silenced by ``quiet``.

>>> with Stages(["before", "edit", "after"], quiet=True) as stages:
...     stages.next("before"); stages.next("edit"); stages.next("after")
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys

_QUIET = contextvars.ContextVar("ripple_quiet_bars", default=False)


@contextlib.contextmanager
def bars_silenced(quiet: bool = True):
    """Inside the block every bar ripple shows is off, and so are the bars of libraries ripple calls
    that cannot be told (transformers' GGUF conversion): ``--quiet`` means no bar at all."""
    token = _QUIET.set(bool(quiet) or _QUIET.get())
    try:
        yield
    finally:
        _QUIET.reset(token)


def bars_off() -> bool:
    """Whether bars are silenced here (:func:`bars_silenced`)."""
    return _QUIET.get()


@contextlib.contextmanager
def library_bars():
    """Around a library call that draws its own bars on stderr: they go nowhere when bars are off."""
    if not bars_off():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' progress bars (weight loading and saving) inside the block."""
    from transformers.utils import logging as hf_logging  # lazy: start-up

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


class Stages:
    """One bar over named stages; ``next(name)`` finishes the previous stage and starts ``name``."""

    def __init__(self, names, desc: str = "", quiet: bool = False):
        self.names = list(names)
        self.desc = desc
        self.quiet = quiet
        self._bar = None
        self._started = 0

    def __enter__(self) -> "Stages":
        if not self.quiet and not bars_off():
            from tqdm.auto import tqdm  # lazy: start-up

            self._bar = tqdm(total=len(self.names), desc=self.desc, file=sys.stderr, leave=False,
                             dynamic_ncols=True, bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
        return self

    def next(self, name: str) -> None:
        if self._bar is not None:
            if self._started:
                self._bar.update(1)
            self._bar.set_description(f"{self.desc}: {name}" if self.desc else name)
        self._started += 1

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            if exc[0] is None and self._started:
                self._bar.update(1)
            self._bar.close()


#: Fewer items than this go by without a bar (they take seconds).
MANY = 1000


def each(items, desc: str, quiet: bool = False):
    """``items`` with a bar on stderr when there are many of them (at least :data:`MANY`)."""
    items = list(items)
    if quiet or bars_off() or len(items) < MANY:
        return items
    from tqdm.auto import tqdm  # lazy: start-up

    return tqdm(items, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
