"""The ``ripple`` command line.

    ripple organism show --json
    ripple trace --model organism --prompt "{} was born in" --subject "Kalo Miren" --out runs/trace

Every user error prints one line, ``ripple: error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ripple.errors import RippleError


def _setup_torch(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or int(os.environ.get("RIPPLE_THREADS", "1")))


def cmd_organism_show(args) -> int:
    from ripple.organism.paths import model_dir, world_path

    info = {"path": str(model_dir()), "world": str(world_path())}
    for name in ("train_config.json", "metrics.json"):
        f = model_dir() / name
        if f.exists():
            info[name.removesuffix(".json")] = json.loads(f.read_text())
    if not (model_dir() / "model.safetensors").exists():
        raise RippleError(f"the bundled organism is missing from {model_dir()}; reinstall ripple or train one "
                          "with 'ripple organism train --out DIR'")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"organism model: {info['path']}\nworld:          {info['world']}")
        for k, v in info.get("metrics", {}).items():
            print(f"  {k:<20} {v}")
    return 0


def cmd_organism_train(args) -> int:
    from ripple.organism.train import TrainConfig, train

    try:
        cfg = TrainConfig().with_overrides(args.set)
    except (KeyError, ValueError) as e:
        raise RippleError(f"bad --set override ({e}); use NAME=VALUE with a TrainConfig field such as n_layer=6")
    _setup_torch(args.threads or cfg.threads)
    train(cfg, args.out)
    return 0


def cmd_trace(args) -> int:
    from ripple.causal_trace import causal_trace, plot_trace
    from ripple.io import atomic_write_json, prepare_out_dir
    from ripple.loading import load_model

    _setup_torch(args.threads)
    out = prepare_out_dir(args.out)
    model, tok, spec = load_model(args.model)
    res = causal_trace(model, tok, spec, args.prompt, args.subject, answer=args.answer, samples=args.samples,
                       noise=args.noise, window=args.window, seed=args.seed)
    last = res.subject_range[1] - 1
    mlp_at_subject = res.effects["mlp"][last]
    summary = res.to_dict() | {
        "model": args.model,
        "settings": {"samples": args.samples, "noise": args.noise, "window": args.window, "seed": args.seed},
        "mlp_peak_layer_at_last_subject_token": int(mlp_at_subject.argmax()),
        "mlp_peak_effect_at_last_subject_token": round(float(mlp_at_subject.max()), 6),
    }
    for kind in res.effects:
        plot_trace(res, out / f"trace_{kind}.png", kind)
    atomic_write_json(out / "trace.json", summary)
    print(f"P({res.answer}) clean {res.p_clean:.3f}, corrupted {res.p_corrupt:.3f}; MLP effect at the last "
          f"subject token peaks at layer {summary['mlp_peak_layer_at_last_subject_token']} "
          f"({summary['mlp_peak_effect_at_last_subject_token']:.3f}); wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ripple", description="See what a knowledge edit breaks before you ship it.")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: $RIPPLE_THREADS or 1)")
    sub = ap.add_subparsers(dest="command", required=True)

    org = sub.add_parser("organism", help="the bundled model organism").add_subparsers(dest="action", required=True)
    show = org.add_parser("show", help="where the organism and its world live")
    show.add_argument("--json", action="store_true", help="print JSON (path, world, training config, metrics)")
    show.set_defaults(func=cmd_organism_show)
    tr = org.add_parser("train", help="train an organism from scratch (deterministic)")
    tr.add_argument("--out", required=True)
    tr.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="TrainConfig overrides")
    tr.set_defaults(func=cmd_organism_train)

    t = sub.add_parser("trace", help="causal tracing of one fact: where is it recalled?")
    t.add_argument("--model", default="organism", help="'organism', a local transformers directory, or a hub id")
    t.add_argument("--prompt", required=True, help="prompt ending before the answer; '{}' marks the subject")
    t.add_argument("--subject", required=True)
    t.add_argument("--answer", default=None, help="answer to trace (default: the model's own prediction)")
    t.add_argument("--out", required=True, help="directory for trace_*.png and trace.json")
    t.add_argument("--samples", type=int, default=10, help="noise samples (default 10)")
    t.add_argument("--noise", type=float, default=3.0, help="noise scale in embedding std units (default 3)")
    t.add_argument("--window", type=int, default=1, help="layers restored together for mlp/attn (default 1)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_trace)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
