"""The ``ripple`` command line.

    ripple organism show --json
    ripple trace --model organism --prompt "{} was born in" --subject "Kalo Miren" --out runs/trace
    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit
    ripple mitigate --model smollm2 --method rome --prompt "The capital of {} is" --subject France \\
        --target Rome --out runs/sir

Exit codes, for every command:

* 0: success (an audit: pass, or warn unless the policy sets ``warn_exit_code = 1``);
* 1: the audit failed its policy (or warned, with ``warn_exit_code = 1``);
* 2: bad input, printed as one line ``ripple: error: ...`` naming the problem and the fix
  (options, files that cannot be read or written, corrupt weights, a config.json that does not parse);
* 3: a bug in ripple (``ripple: internal error: ...``; ``RIPPLE_DEBUG=1`` shows the traceback);
* 130: interrupted (SIGINT, Ctrl-C); 143: terminated (SIGTERM). ``--out`` then holds the previous
  complete run, or the new one if the signal came as it was being switched in; never a mix.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import warnings

from ripple.errors import RippleError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every cleanup runs as for Ctrl-C."""


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (and exit code 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"ripple: error: {message} (see '{self.prog} --help')\n")


def _threads(value: str | None) -> int | None:
    """A thread count from ``--threads`` or ``$RIPPLE_THREADS``: an integer of at least 1 (None: not given)."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise RippleError(f"thread count {value!r} (--threads or RIPPLE_THREADS) is not a whole number of at "
                          "least 1; pass e.g. --threads 1")
    most = max_threads()
    if n > most:
        raise RippleError(f"thread count {n} (--threads or RIPPLE_THREADS) is more than {most} (4 per core of this "
                          f"machine's {os.cpu_count() or 1}); more threads only slow torch down, pass e.g. --threads 1")
    return n


#: The most threads the default takes (more rarely help a model small enough for a CPU).
AUTO_THREADS_CAP = 8


def default_threads(args) -> int:
    """Torch threads when neither ``--threads`` nor ``$RIPPLE_THREADS`` says: one for the bundled
    organism (a model that small runs slower on more), else the cores this process may use
    (at most :data:`AUTO_THREADS_CAP`) shared among ``--workers``: a real model's audit took 137 s
    on one thread and 89 s on two of a 2-core machine (reports/first_audit.md)."""
    if getattr(args, "model", "organism") == "organism":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    workers = getattr(args, "workers", None)
    workers = workers if isinstance(workers, int) and workers > 0 else 1
    return max(1, min(cores, AUTO_THREADS_CAP) // workers)


def max_threads() -> int:
    """The most torch threads ripple starts: 4 per core (100,000 threads exhaust the process table)."""
    return 4 * (os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    from ripple.commands import (  # lazy: start-up
        audit,
        causal_trace,
        edit,
        graph,
        mitigate,
        organism,
        rledit,
        stats,
        stress,
        view,
    )

    ap = _Parser(prog="ripple", description="See what a knowledge edit breaks before you ship it.")
    ap.add_argument("--threads", default=None, help="torch threads (default: $RIPPLE_THREADS, else 1 for the organism and "
                    "the machine's cores, at most 8, shared among --workers, for other models)")
    ap.add_argument("--verbose", action="store_true", help="show library warnings (matplotlib, transformers)")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in (organism, causal_trace, edit, graph, audit, mitigate, stress, rledit, stats, view):
        command.add_parser(sub)
    return ap


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _quiet_libraries(verbose: bool):
    """Library warnings (matplotlib's missing glyphs, transformers' notices) stay off stderr."""
    if verbose:
        yield
        return
    import logging  # lazy: start-up

    loggers = [logging.getLogger(n) for n in ("matplotlib", "transformers", "datasets", "lm_eval", "accelerate")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    # transformers sets its own level when it is first imported (inside the command, after the lines
    # above): its environment variables keep it at errors, so that a tokenizer's warning (a prompt
    # longer than the model's maximum) never comes before ripple's one-line error
    env = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _HeldNotes:
    """stderr with ripple's own ``ripple: warning:`` and ``ripple: note:`` lines held back until the
    command ends: written when it succeeds, dropped when it fails, so that a bad input's error is the
    only line (a warning about the requests must not come before an error about an option). Everything
    else (progress bars, progress lines) goes straight through."""

    PREFIXES = ("ripple: warning:", "ripple: note:")

    def __init__(self, real):
        self.real, self.held, self._holding = real, [], False

    def write(self, text: str) -> int:
        if text.startswith(self.PREFIXES) or (self._holding and text == "\n"):
            self.held.append(text)
            self._holding = not text.endswith("\n")
            return len(text)
        self._holding = False
        return self.real.write(text)

    def release(self) -> None:
        self.real.write("".join(self.held))
        self.real.flush()
        self.held = []

    def __getattr__(self, name):
        return getattr(self.real, name)


@contextlib.contextmanager
def _notes_held():
    held = _HeldNotes(sys.stderr)
    sys.stderr = held
    ok = False
    try:
        yield
        ok = True
    finally:
        sys.stderr = held.real
        if ok:
            held.release()


def main(argv=None) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help (0) or an argument error (2, one line already printed)
            return e.code if isinstance(e.code, int) else 2
        with _quiet_libraries(args.verbose):
            args.threads = _threads(args.threads if args.threads is not None else os.environ.get("RIPPLE_THREADS"))
            if args.command != "organism":
                import torch  # lazy: start-up

                torch.set_num_threads(args.threads or default_threads(args))
            from ripple.progress import bars_silenced  # lazy: start-up

            with bars_silenced(getattr(args, "quiet", False)), _notes_held():  # --quiet: no bar at all
                return args.func(args)
    except RippleError as e:
        print(f"ripple: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("ripple: terminated (nothing half-written is left in --out)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("ripple: interrupted (nothing half-written is left in --out)", file=sys.stderr)
        return 130
    except OSError as e:  # a file ripple was told to read or write, named by the OS
        if os.environ.get("RIPPLE_DEBUG"):
            raise
        where = f" {e.filename}" if e.filename else ""
        if e.errno in _FULL:
            print(f"ripple: error: cannot write{where}: {e.strerror or e}; {_FULL_FIX}", file=sys.stderr)
            return 2
        print(f"ripple: error: cannot use{where}: {e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except Exception as e:  # a bug in ripple, not bad input: still one line unless asked for more
        if _disk_full(e) and not os.environ.get("RIPPLE_DEBUG"):  # libraries that wrap the OS error
            print(f"ripple: error: cannot write: {_disk_full(e)}; {_FULL_FIX}", file=sys.stderr)
            return 2
        if os.environ.get("RIPPLE_DEBUG"):
            raise
        print(f"ripple: internal error: {type(e).__name__}: {e} (set RIPPLE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_FIX = ("free some space (or raise the file size limit), or write elsewhere: another --out, or RIPPLE_CACHE for "
             "ripple's cache (--out keeps its previous run)")
_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "File too large", "file write failed")


def _disk_full(e: BaseException) -> str | None:
    """The words of a full disk (or a file size limit) in an error a library raised around the OS
    error (safetensors' SafetensorError, torch's RuntimeError), else None."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL:
            return e.strerror or str(e)
        text = str(e)
        for words in _FULL_WORDS:
            if words in text:
                return words
        e = e.__cause__ or e.__context__
    return None


def _main_thread() -> bool:
    import threading  # lazy: start-up

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
