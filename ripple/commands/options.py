"""What the commands share: typed, ranged command-line values (a bad one is a one-line argparse
error naming the option), and the options several commands take (the model and its placement, the
editor and its hyperparameters, the edit requests, the budget, the mitigation), with the helpers
that turn them into library calls. No command imports another (an import-linter contract).

>>> count("3"), share("0.4"), positive("2.5")
(3, 0.4, 2.5)
>>> count("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a whole number of at least 1 (and at most 1000000), got '0'
>>> share("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a share in (0, 1], got '1.5'
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from ripple.devices import DEVICE_MAPS
from ripple.editing.editor import editor_help
from ripple.editing.limits import SHARE, Limit
from ripple.errors import RippleError


def _number(value: str, kind=float):
    try:
        x = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, "
                                         f"got {value!r}") from None
    if kind is float and not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    return x


def ranged(limit: Limit):
    """An argparse ``type`` for numbers within ``limit`` (whole numbers when ``limit.integer``)."""

    def parse(value: str):
        x = _number(value, int if limit.integer else float)
        problem = limit.problem(x)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {value!r}")
        return x

    return parse


#: The largest count an option takes: past it a run would not end in any session (or a stream of
#: requests would not fit in memory), so it is a typo.
MAX_COUNT = 1_000_000
count = ranged(Limit(1, MAX_COUNT, integer=True, text=f"a whole number of at least 1 (and at most {MAX_COUNT})"))
natural = ranged(Limit(0, MAX_COUNT, integer=True, text=f"a whole number of at least 0 (and at most {MAX_COUNT})"))
#: Seeds go to torch, numpy and random: numpy takes 0 to 2**32 - 1.
seed = ranged(Limit(0, 2**32 - 1, integer=True, text="a whole number of at least 0 (and at most 4294967295)"))
positive = ranged(Limit(0, 1e6, lo_open=True, text="a finite number above 0 (and at most 1e6)"))  # a noise scale
share = ranged(SHARE)  # RECT's kept share
open_share = ranged(Limit(0, 1, lo_open=True, hi_open=True, text="between 0 and 1 (a share, both ends excluded)"))
ratio_above_one = ranged(Limit(1, lo_open=True, text="above 1 (a rise)"))


def text(value: str) -> str:
    """A non-empty string."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


_SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)


def device_map(value: str):
    """``--device-map``: a strategy accelerate knows, or a JSON file of ``{module: device}``."""
    if value in DEVICE_MAPS:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DEVICE_MAPS)} or a JSON file of "
                                         f"{{module: device}}, got {value!r}")
    try:
        mapping = json.loads(path.read_text())
    except RecursionError:
        raise argparse.ArgumentTypeError(f"{value} is nested too deeply to read; flatten it") from None
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{value} is not a readable JSON file ({exc})") from None
    if not isinstance(mapping, dict) or not mapping or not all(
            isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in mapping.items()):
        raise argparse.ArgumentTypeError(f"{value} must hold a JSON object of module name -> device "
                                         '(e.g. {"transformer.h.0": 0, "transformer.h.1": "cpu"})')
    return mapping


def max_memory(value: str) -> dict:
    """``--max-memory 0=20GiB,cpu=64GiB``: device (a GPU index, cpu, mps or disk) -> size."""
    out: dict = {}
    for part in value.split(","):
        dev, sep, size = part.strip().partition("=")
        dev, size = dev.strip(), size.strip()
        if not sep or not _SIZE.match(size) or not (dev.isdigit() or dev in ("cpu", "mps", "disk")):
            raise argparse.ArgumentTypeError(f"must be DEVICE=SIZE pairs, e.g. 0=20GiB,cpu=64GiB (devices: GPU "
                                             f"indices, cpu, mps, disk), got {part.strip()!r}")
        out[int(dev) if dev.isdigit() else dev] = size.replace(" ", "")
    return out


# ---- the options several commands share (no command imports another) ----

MODEL_HELP = ("'organism', 'smollm2', 'gemma3-270m', a .gguf file, a local transformers directory, or a hub id")


DTYPES = ("float32", "bfloat16", "float16")


def add_model_argument(p) -> None:
    """``--model``, ``--dtype`` and where the model goes (``--device``, or ``--device-map`` with
    ``--max-memory`` and ``--offload-folder``)."""
    p.add_argument("--model", default="organism", type=text, help=MODEL_HELP)
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="the weights' dtype (the edit's solve runs "
                   "in float64, the delta is kept in float32 and applied in this dtype)")
    p.add_argument("--device", default="cpu", type=text, help="the device for the whole model: cpu, cuda, "
                   "cuda:1 (default cpu; --device-map spreads it instead)")
    p.add_argument("--device-map", default=None, type=device_map, help="spread the model over devices with "
                   "accelerate: auto, balanced, sequential, or a JSON file of {module: device} (devices: 0, 1, "
                   "cpu, disk)")
    p.add_argument("--max-memory", default=None, type=max_memory, metavar="DEV=SIZE,...",
                   help="with --device-map: the memory each device may hold, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    p.add_argument("--offload-folder", default=None, help="with --device-map: where weights offloaded to disk "
                   "go (default: a temporary directory)")


def model_kwargs(args) -> dict:
    """:func:`ripple.loading.load_model`'s keyword arguments from :func:`add_model_argument`'s options
    (the device checked first: one line, before anything loads)."""
    from ripple.devices import check_device  # lazy: start-up

    check_device(args.device)
    return {"dtype": args.dtype, "device": args.device, "device_map": args.device_map,
            "max_memory": args.max_memory, "offload_folder": args.offload_folder}


def add_model_options(p) -> None:
    """The model and what editing it reads: hyperparameter file and overrides, statistics corpus."""
    add_model_argument(p)
    p.add_argument("--hparams", default=None, help="JSON file of hyperparameters (flat, or laid out per method "
                   "as a model's ripple_hparams.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    p.add_argument("--stats-corpus", default=None, help="the text for key statistics: a text file (one passage a line), "
                   "hf:NAME[:CONFIG[:SPLIT]], samples:N (N passages sampled from the model, cached), graph (the "
                   "knowledge graph's sentences) or english; default: the organism's world text, for other models "
                   "the measured default (samples:256)")
    p.add_argument("--hypernet", default=None, type=text, help="--method rledit: the directory of a hypernetwork "
                   "'ripple rledit train' wrote (default: the organism's shipped one, or the one trained and cached "
                   "for this model)")


def add_edit_options(p, edited: bool = False) -> None:
    """The options every command that makes one edit shares: the model options, the editor, the guard;
    ``edited``: also ``--edited PATH`` (an edit made elsewhere, instead of ``--method``)."""
    add_model_options(p)
    p.add_argument("--method", required=not edited, help=f"the editor: {editor_help()}"
                   + ("; or audit an edit made elsewhere with --edited" if edited else ""))
    p.add_argument("--force", action="store_true", help="apply an update even past the norm guard")
    if edited:
        p.add_argument("--edited", default=None, type=text, metavar="PATH",
                       help="audit an edit made elsewhere, against --model (the base): an edited checkpoint "
                            "directory (save_pretrained), a PEFT adapter directory (merged in memory), ripple's "
                            "delta.safetensors, or a .safetensors/.pt file of new weights or differences; --edit "
                            "FILE says what it was meant to do (optional)")
        p.add_argument("--edited-kind", default="auto", choices=("auto", "weights", "diff"),
                       help="--edited tensor file: new weights or differences (default: detected and reported)")


#: Options that set how ripple computes an edit: meaningless for an edit made elsewhere.
_EDITOR_ONLY = (("--rect", "rect"), ("--seed", "seed"), ("--hparams", "hparams"), ("--set", "set"),
                ("--hypernet", "hypernet"), ("--force", "force"))


def check_edited(args) -> bool:
    """Whether the command audits an edit made elsewhere (``--edited``); one-line errors for both or
    neither of --method and --edited, an absent path, and editor options given with --edited."""
    edited = getattr(args, "edited", None)
    if edited is None:
        if args.method is None:
            raise RippleError("no edit given: pass --method NAME (ripple makes the edit) or --edited PATH (an edit "
                              "made elsewhere)")
        if getattr(args, "edited_kind", "auto") != "auto":
            raise RippleError("--edited-kind says what an --edited file holds; pass --edited PATH with it")
        return False
    if args.method is not None:
        raise RippleError(f"pass --method {args.method} (ripple makes the edit) or --edited {edited} (an edit made "
                          "elsewhere), not both")
    if not Path(edited).exists():
        from ripple.io import absent  # lazy: start-up

        raise RippleError(f"edited model {edited} {absent(edited)}; pass an edited checkpoint directory, a PEFT "
                          "adapter directory or a tensor file")
    given = [flag for flag, name in _EDITOR_ONLY if getattr(args, name, None) not in (None, False, [])]
    if given:
        raise RippleError(f"{', '.join(given)} set(s) how ripple computes an edit; an --edited edit is given as it "
                          "is: drop it")
    return True


def load_edited_for(lab, args):
    """The --edited edit against the lab's base; a warning when no weight differs."""
    delta = lab.load_edited(args.edited, args.edited_kind)
    if not delta.deltas:
        print(f"ripple: warning: {args.edited}: no weights differ from the base; the audit measures an unchanged "
              "model", file=sys.stderr)
    return delta


def inputs_of(args, *extra) -> list[tuple[str, object]]:
    """The files a command reads, for :func:`ripple.outputs.check_out` (``extra``: ``(label, path)``)."""
    from ripple.editing.corpora import parse_spec  # lazy: start-up
    from ripple.loading import model_path  # lazy: start-up

    corpus = args.stats_corpus if args.stats_corpus and parse_spec(args.stats_corpus)[0] == "file" else None
    return [("model directory", model_path(args.model)), ("hyperparameter file", args.hparams),
            ("statistics corpus", corpus), ("RLEdit hypernetwork", getattr(args, "hypernet", None)), *extra]


def hypernet_overrides(args, method: str, strict: bool = True) -> list[str]:
    """``hypernet=DIR`` for rledit when ``--hypernet`` is given; for another editor nothing, or with
    ``strict`` a one-line error."""
    given = getattr(args, "hypernet", None)
    if not given or (method != "rledit" and not strict):
        return []
    if method != "rledit":
        from ripple.errors import RippleError  # lazy: start-up

        raise RippleError(f"--hypernet is for --method rledit, not {method}; drop it or pass --method rledit")
    return [f"hypernet={given}"]


def precheck_hparams(args, method: str, extra_overrides=(), strict: bool = True) -> None:
    """Resolve ``method``'s hyperparameters from the options before the model is loaded (its
    ``config.json`` gives the architecture), so that a bad value fails at once; layer indices are
    checked against the model's depth after loading."""
    import json  # lazy: start-up

    from ripple.editing.hparams import resolve_hparams  # lazy: start-up
    from ripple.loading import model_path  # lazy: start-up

    path = model_path(args.model)
    model_type = None
    if path is not None and (path / "config.json").is_file():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (ValueError, OSError, AttributeError, RecursionError):
            return  # the loader says what is wrong with it
    resolve_hparams(method, str(model_type), None, model_dir=path, json_file=args.hparams,
                    overrides=[*args.set, *extra_overrides, *hypernet_overrides(args, method, strict)])


def setup_from_args(args, requests, extra_overrides=()):
    """The library's :func:`~ripple.editing.setup.load_setup` from the shared options; warnings
    about the requests go to stderr."""
    from ripple.editing.setup import load_setup  # lazy: start-up

    setup = load_setup(args.model, args.method, requests, hparams_file=args.hparams,
                       overrides=[*args.set, *extra_overrides, *hypernet_overrides(args, args.method)],
                       stats_corpus_file=args.stats_corpus, **model_kwargs(args))
    for warning in setup.warnings:
        print(f"ripple: warning: {warning}", file=sys.stderr)
    return setup


def add_budget_option(p) -> None:
    from ripple.commands.options import share  # lazy: start-up

    p.add_argument("--budget", type=share, default=None, metavar="F",
                   help="after the edit, evaluate only the share F (0-1] of the probe items most at risk of "
                        "damage (ranked from the edit and the unedited model); the figures are then an estimate")
    p.add_argument("--ranker", default=None, metavar="NAME",
                   help="with --budget: the damage ranker (default key_sqrt_margin; combined and taylor need one "
                        "backward pass over the probe set; see reports/gie.md)")


def add_chat_option(p) -> None:
    """``--chat`` / ``--no-chat``: score replies to chat questions (default: when the tokenizer has a chat template)."""
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="also ask each relation's questions through the model's chat template and score the replies "
                        "(default: when the tokenizer has one; --chat requires one, --no-chat turns it off)")


def chat_note(tok, chat) -> None:
    """Say on stderr when chat answers are not measured because the tokenizer has no template."""
    from ripple.evaluate.generated import modes_for  # lazy: start-up

    note = modes_for(tok, chat).note
    if note and chat is None:
        print(f"ripple: note: {note}", file=sys.stderr)


def ranker_arg(args) -> dict:
    """``{"ranker": NAME}`` from ``--ranker`` (checked: a known ranker, and only with --budget)."""
    if args.ranker is None:
        return {}
    if args.budget is None:
        raise RippleError("--ranker orders the items a --budget run evaluates; pass --budget F with it")
    from ripple.gie.rankers import RANKERS  # lazy: start-up

    RANKERS.get(args.ranker)
    return {"ranker": args.ranker}


def check_tasks(tasks) -> list[str]:
    """``--tasks`` as given: None (not asked for) or at least one name."""
    if tasks is None:
        return []
    if not tasks:
        raise RippleError("--tasks needs at least one task name (e.g. --tasks organism); leave it out for none")
    return list(tasks)


def add_request_options(p, edit_help: str) -> None:
    """``--edit FILE`` or ``--prompt/--subject/--target`` (read back by :func:`requests_from_args`)."""
    p.add_argument("--edit", default=None, help=edit_help)
    p.add_argument("--prompt", default=None, help="edit prompt with {} for the subject (instead of --edit)")
    p.add_argument("--subject", default=None, help="the edited subject (with --prompt)")
    p.add_argument("--target", default=None, help="the new object (with --prompt)")
    p.add_argument("--target-true", default=None, help="the current object (optional; the world or the "
                   "real-world graph knows it)")


def requests_from_args(args) -> list:
    """The requests of ``--edit FILE`` or of ``--prompt/--subject/--target`` (exactly one of the two)."""
    from ripple.editing.request_files import load_requests  # lazy: start-up
    from ripple.editing.requests import parse_request  # lazy: start-up

    inline = [args.prompt, args.subject, args.target]
    if args.edit is not None:
        if any(x is not None for x in inline + [args.target_true]):
            raise RippleError("pass either --edit FILE or --prompt/--subject/--target, not both")
        notes: list[str] = []
        requests = load_requests(args.edit, batch=True, notes=notes)  # audited alone and together
        for note in notes:
            print(f"ripple: note: {note}", file=sys.stderr)
        return requests
    if not all(x is not None for x in inline):
        missing = [n for n, x in zip(("--prompt", "--subject", "--target"), inline) if x is None]
        raise RippleError(f"no edit given: pass --edit FILE, or --prompt, --subject and --target "
                          f"(missing {', '.join(missing)})")
    obj = {"prompt": args.prompt, "subject": args.subject, "target_new": args.target}
    if args.target_true is not None:
        obj["target_true"] = args.target_true
    return [parse_request(obj, "the edit given on the command line")]


def add_mitigation_options(p, flag: str = "--mitigation", default: str | None = "sir") -> None:
    """The mitigation's name and its ``--mitigation-set`` overrides."""
    p.add_argument(flag, default=default, help="the mitigation (built in: sir, selective impact revision)"
                   + (f"; default {default}" if default else ""))
    p.add_argument("--mitigation-set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="mitigation hyperparameters, e.g. iterations=5 neuron_share=0.8")
