"""``ripple trace``: causal tracing of one fact (where is it recalled?). Not to be confused with
:mod:`ripple.hooks`, the forward-hook helpers (``Trace``) that causal tracing is built on."""

from __future__ import annotations


def add_parser(sub) -> None:
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
    t.set_defaults(func=run)


def run(args) -> int:
    from ripple.causal_trace import causal_trace, plot_trace
    from ripple.io import atomic_write_json, prepare_out_dir
    from ripple.loading import load_model

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
