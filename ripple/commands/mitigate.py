"""``ripple mitigate``: edit, find what the edit damaged, and revise it (SIR) until the damage is gone.

    ripple mitigate --model smollm2 --method rome --prompt "The capital of {} is" --subject France \\
        --target Rome --out runs/france-sir
    ripple mitigate --model organism --method memit --edit edits.jsonl --out runs/batch-sir
    ripple mitigate --model smollm2 --edited runs/easyedit-ckpt --edit edits.jsonl --out runs/external-sir

With ``--edited`` (an edit made elsewhere) SIR re-solves the MLP output projections the edit changed
(it needs only their update, the damaged items' keys and the key statistics); what it cannot revise
(attention, embeddings, a LoRA on other matrices) is left as it is and named in mitigation.json.

``--out`` receives, as one unit (:mod:`ripple.outputs`): the revised model (a transformers
directory that ``AutoModelForCausalLM.from_pretrained`` loads: the base model plus
``delta.safetensors``), ``delta.safetensors`` (the revised edit), ``plain_delta.safetensors`` (the
editor's own) and ``mitigation.json``: the damaged items and the CounterFact metrics before the
edit, after the plain edit and after the revision, each round of the loop and why it stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ripple.commands.options import add_mitigation_options


def add_parser(sub) -> None:
    from ripple.commands.options import add_edit_options, add_request_options, text  # lazy: start-up

    p = sub.add_parser("mitigate", help="edit, then revise the edit so that what it damaged is repaired (SIR)")
    add_edit_options(p, edited=True)
    add_request_options(p, "JSON/JSONL file of edit requests (applied together; with --edited: what the edit was "
                           "meant to do, needed to keep it while revising)")
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
    left = sorted({n for r in out.rounds for n in (r.get("step") or {}).get("left_alone", [])})
    unrevisable = next((r["step"]["unrevisable"] for r in out.rounds if (r.get("step") or {}).get("unrevisable")), None)
    return {**out.summary(), "requests": [r.to_dict() for r in requests],
            **({"left_alone": left} if left else {}), **({"unrevisable": unrevisable} if unrevisable else {}),
            "metrics": {"plain": _metrics(out.rounds[0]), "revised": _metrics(out.rounds[out.chosen])},
            "items": item_table(plan.items, damaged, out.states)}


def _metrics(r: dict) -> dict:
    return {k: r.get(k) for k in ("efficacy", "paraphrase", "neighborhood")} | {"damaged": len(r.get("damaged", []))}


def run(args) -> int:
    from ripple.api import Lab  # lazy: start-up
    from ripple.commands.options import (  # lazy: start-up
        check_edited,
        inputs_of,
        load_edited_for,
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

    edited = check_edited(args)
    if not edited:
        get_editor(args.method)
    from ripple.mitigation import mitigation_hparams  # lazy: start-up

    hp_m = mitigation_hparams(args.mitigation, args.mitigation_set)
    if args.probes is not None and not Path(args.probes).is_file():
        from ripple.io import absent  # lazy: start-up

        raise RippleError(f"probe file {args.probes} {absent(args.probes)}; pass a probe set JSONL with --probes")
    check_out(args.out, inputs_of(args, ("edit file", args.edit), ("probe set", args.probes),
                                  ("edited model", args.edited)),
              writes=("delta.safetensors", "plain_delta.safetensors", "mitigation.json", *MODEL_FILES))
    requests = requests_from_args(args)
    if not edited:
        precheck_hparams(args, args.method)
    setup = setup_from_args(args, requests)
    if not edited and get_editor(args.method).one_request_per_solve and len(setup.requests) > 1:
        raise RippleError(f"{args.method} edits one fact per solve and mitigate revises one solve; pass one "
                          "request, or use a batch editor (memit, emmet, alphaedit) for several")
    say = None if args.quiet else (lambda msg: print(f"ripple: {msg}", flush=True))
    lab = Lab(setup, str(args.model))
    delta = None
    if edited:
        delta = load_edited_for(lab, args)
        lab.external(delta)
    edit = Edit(setup.method, tuple(setup.requests), setup.hp, force=args.force, delta=delta)
    out = lab.mitigate_for(edit, args.mitigation, hp_m, args.probes, log=say)
    record = mitigation_record(out, out.plan, setup.requests)
    with output_unit(args.out) as stage:
        with out.revised.applied(setup.model):
            save_model(setup.model, setup.tok, stage, base=args.model,
                       edit={"method": setup.method, "mitigation": args.mitigation, "requests": len(setup.requests),
                             **({"edited": str(args.edited)} if edited else {})})
        out.revised.save(stage / "delta.safetensors")
        out.plain.save(stage / "plain_delta.safetensors")
        atomic_write_json(stage / "mitigation.json", json.loads(json.dumps(record, default=str)))
    m = record["metrics"]
    if record.get("left_alone"):
        print(f"ripple: note: {args.mitigation} left {len(record['left_alone'])} changed tensor(s) as they are (not an "
              f"MLP output projection it can re-solve), e.g. {record['left_alone'][0]}", file=sys.stderr)
    print(f"ripple mitigate: {args.mitigation} on {setup.method}: damaged items {m['plain']['damaged']} -> "
          f"{m['revised']['damaged']} ({out.stopped}); efficacy {m['plain']['efficacy']} -> "
          f"{m['revised']['efficacy']}, paraphrase {m['plain']['paraphrase']} -> {m['revised']['paraphrase']}; "
          f"wrote {args.out}")
    return 0
