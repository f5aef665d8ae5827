"""The ``ripple`` command line.

    ripple organism show --json
    ripple trace --model organism --prompt "{} was born in" --subject "Kalo Miren" --out runs/trace
    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit

Every user error prints one line, ``ripple: error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from ripple.errors import RippleError


def _setup_torch(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or int(os.environ.get("RIPPLE_THREADS", "1")))


def build_parser() -> argparse.ArgumentParser:
    from ripple.commands import audit, causal_trace, edit, graph, organism, stress

    ap = argparse.ArgumentParser(prog="ripple", description="See what a knowledge edit breaks before you ship it.")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: $RIPPLE_THREADS or 1)")
    sub = ap.add_subparsers(dest="command", required=True)
    for command in (organism, causal_trace, edit, graph, audit, stress):
        command.add_parser(sub)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "organism":
            _setup_torch(args.threads)
        return args.func(args)
    except RippleError as e:
        print(f"ripple: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ripple: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in ripple, not bad input: still one line unless asked for more
        if os.environ.get("RIPPLE_DEBUG"):
            raise
        print(f"ripple: internal error: {type(e).__name__}: {e} (set RIPPLE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
