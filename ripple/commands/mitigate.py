"""``ripple mitigate``: edit, find what the edit damaged, and revise it (SIR) until the damage is gone.

    ripple mitigate --model smollm2 --method rome --prompt "The capital of {} is" --subject France \\
        --target Rome --out runs/france-sir
    ripple mitigate --model organism --method memit --edit edits.jsonl --out runs/batch-sir

``--out`` receives, as one unit (:mod:`ripple.outputs`): the revised model (a transformers
directory that ``AutoModelForCausalLM.from_pretrained`` loads: the base model plus
``delta.safetensors``), ``delta.safetensors`` (the revised edit), ``plain_delta.safetensors`` (the
editor's own) and ``mitigation.json``: the damaged items and the CounterFact metrics before the
edit, after the plain edit and after the revision, each round of the loop and why it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from ripple.commands.options import add_mitigation_options


def add_parser(sub) -> None:
    from ripple.commands.options import add_edit_options, add_request_options, text  # lazy: start-up

    p = sub.add_parser("mitigate", help="edit, then revise the edit so that what it damaged is repaired (SIR)")
    add_edit_options(p)
    add_request_options(p, "JSON/JSONL file of edit requests (applied together)")
    p.add_argument("--out", required=True, type=text, help="directory for the revised model, delta.safetensors, "
                   "plain_delta.safetensors and mitigation.json")
    p.add_argument("--probes", default=None, help="probe set JSONL where damage is looked for (default: the "
                   "world's facts, or the real-world graph)")
    add_mitigation_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)


def mitigation_record(out, plan, requests) -> dict:
    """The JSON-ready before/after figures of a :class:`~ripple.mitigation.run.Mitigated`."""
    from ripple.mitigation.run import item_table  # lazy: start-up

    damaged = sorted(set(out.damaged["plain"]) | set(out.damaged["revised"]))
    return {**out.summary(), "requests": [r.to_dict() for r in requests],
            "metrics": {"plain": _metrics(out.rounds[0]), "revised": _metrics(out.rounds[out.chosen])},
            "items": item_table(plan.items, damaged, out.states)}


def _metrics(r: dict) -> dict:
    return {k: r.get(k) for k in ("efficacy", "paraphrase", "neighborhood")} | {"damaged": len(r.get("damaged", []))}


def run(args) -> int:
    from ripple.api import Lab  # lazy: start-up
    from ripple.commands.options import (  # lazy: start-up
        inputs_of,
        precheck_hparams,
        requests_from_args,
        setup_from_args,
    )
    from ripple.editing.editor import get_editor  # lazy: start-up
    from ripple.errors import RippleError  # lazy: start-up
    from ripple.gie.pipeline import Edit  # lazy: start-up
    from ripple.io import atomic_write_json  # lazy: start-up
    from ripple.loading import save_model  # lazy: start-up
    from ripple.outputs import MODEL_FILES, check_out, output_unit  # lazy: start-up

    get_editor(args.method)
    from ripple.mitigation import mitigation_hparams  # lazy: start-up

    hp_m = mitigation_hparams(args.mitigation, args.mitigation_set)
    if args.probes is not None and not Path(args.probes).is_file():
        from ripple.io import absent  # lazy: start-up

        raise RippleError(f"probe file {args.probes} {absent(args.probes)}; pass a probe set JSONL with --probes")
    check_out(args.out, inputs_of(args, ("edit file", args.edit), ("probe set", args.probes)),
              writes=("delta.safetensors", "plain_delta.safetensors", "mitigation.json", *MODEL_FILES))
    requests = requests_from_args(args)
    precheck_hparams(args, args.method)
    setup = setup_from_args(args, requests)
    if get_editor(args.method).one_request_per_solve and len(setup.requests) > 1:
        raise RippleError(f"{args.method} edits one fact per solve and mitigate revises one solve; pass one "
                          "request, or use a batch editor (memit, emmet, alphaedit) for several")
    say = None if args.quiet else (lambda msg: print(f"ripple: {msg}", flush=True))
    edit = Edit(args.method, tuple(setup.requests), setup.hp, force=args.force)
    out = Lab(setup, str(args.model)).mitigate_for(edit, args.mitigation, hp_m, args.probes, log=say)
    record = mitigation_record(out, out.plan, setup.requests)
    with output_unit(args.out) as stage:
        with out.revised.applied(setup.model):
            save_model(setup.model, setup.tok, stage, base=args.model,
                       edit={"method": args.method, "mitigation": args.mitigation, "requests": len(setup.requests)})
        out.revised.save(stage / "delta.safetensors")
        out.plain.save(stage / "plain_delta.safetensors")
        atomic_write_json(stage / "mitigation.json", json.loads(json.dumps(record, default=str)))
    m = record["metrics"]
    print(f"ripple mitigate: {args.mitigation} on {args.method}: damaged items {m['plain']['damaged']} -> "
          f"{m['revised']['damaged']} ({out.stopped}); efficacy {m['plain']['efficacy']} -> "
          f"{m['revised']['efficacy']}, paraphrase {m['plain']['paraphrase']} -> {m['revised']['paraphrase']}; "
          f"wrote {args.out}")
    return 0
