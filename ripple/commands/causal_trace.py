"""``ripple trace``: causal tracing of one fact (where is it recalled?). Not to be confused with
:mod:`ripple.hooks`, the forward-hook helpers (``Trace``) that causal tracing is built on."""

from __future__ import annotations

from ripple.errors import RippleError


def add_parser(sub) -> None:
    from ripple.commands.options import count, positive, seed, text  # lazy: start-up

    t = sub.add_parser("trace", help="causal tracing of one fact: where is it recalled?")
    from ripple.commands.options import add_model_argument  # lazy: start-up

    add_model_argument(t)
    t.add_argument("--prompt", required=True, type=text, help="prompt ending before the answer; '{}' marks the subject")
    t.add_argument("--subject", required=True, type=text)
    t.add_argument("--answer", default=None, help="answer to trace (default: the model's own prediction)")
    t.add_argument("--out", required=True, type=text, help="directory for trace_*.png and trace.json")
    t.add_argument("--samples", type=count, default=10, help="noise samples, at least 1 (default 10)")
    t.add_argument("--noise", type=positive, default=3.0, help="noise scale in embedding std units, above 0 "
                   "(default 3)")
    t.add_argument("--window", type=count, default=1, help="layers restored together for mlp/attn, at least 1 "
                   "(default 1)")
    t.add_argument("--kinds", nargs="+", default=["hidden", "mlp", "attn"],
                   help="states to restore: hidden, mlp, attn; mlp/N or attn/N restores a window of N layers "
                   "(default: hidden mlp attn, the last two with --window)")
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bars (a GGUF model's first conversion)")
    t.set_defaults(func=run)


def run(args) -> int:
    from ripple.causal_trace import causal_trace, parse_kind, plot_trace  # lazy: start-up
    from ripple.commands.options import model_kwargs  # lazy: start-up
    from ripple.editing.requests import check_length  # lazy: start-up
    from ripple.io import atomic_write_json  # lazy: start-up
    from ripple.loading import load_model, model_path  # lazy: start-up
    from ripple.outputs import check_out, output_unit  # lazy: start-up
    from ripple.tokens import answer_ids, check_readable, render_prompt  # lazy: start-up

    for kind in args.kinds:
        parse_kind(kind, args.window)  # one line for a bad kind, before the model loads
    mlp_kind = next((k for k in args.kinds if k.split("/")[0] == "mlp"), None)
    if mlp_kind is None:
        raise RippleError("--kinds needs an mlp kind (mlp or mlp/N): the summary reports where the MLP effect "
                          "peaks; add mlp")
    check_out(args.out, [("model directory", model_path(args.model))], writes=("trace.json", "trace_*.png"))
    model, tok, spec = load_model(args.model, **model_kwargs(args))
    check_length(tok, [render_prompt(args.prompt, args.subject)], spec.context_length(model), "prompt",
                 room=8 if args.answer is None else 8 + len(answer_ids(tok, args.answer)))
    check_readable(tok, render_prompt(args.prompt, args.subject), "prompt")
    if args.answer is not None:
        check_readable(tok, " " + args.answer.strip(), "answer")
    if args.window > spec.n_layers(model):
        raise RippleError(f"--window {args.window} is more layers than the model's {spec.n_layers(model)}; pass "
                          f"at most {spec.n_layers(model)}")
    res = causal_trace(model, tok, spec, args.prompt, args.subject, answer=args.answer, samples=args.samples,
                       noise=args.noise, window=args.window, seed=args.seed, kinds=tuple(args.kinds))
    last = res.subject_range[1] - 1
    mlp_at_subject = res.effects[mlp_kind][last]
    summary = res.to_dict() | {
        "model": args.model,
        "settings": {"samples": args.samples, "noise": args.noise, "window": args.window, "seed": args.seed,
                     "kinds": list(args.kinds)},
        "mlp_peak_layer_at_last_subject_token": int(mlp_at_subject.argmax()),
        "mlp_peak_effect_at_last_subject_token": round(float(mlp_at_subject.max()), 6),
    }
    with output_unit(args.out) as stage:
        for kind in res.effects:
            plot_trace(res, stage / f"trace_{kind.replace('/', '_w')}.png", kind)
        atomic_write_json(stage / "trace.json", summary)
    print(f"P({res.answer}) clean {res.p_clean:.3f}, corrupted {res.p_corrupt:.3f}; MLP effect at the last "
          f"subject token peaks at layer {summary['mlp_peak_layer_at_last_subject_token']} "
          f"({summary['mlp_peak_effect_at_last_subject_token']:.3f}); wrote {args.out}")
    return 0
