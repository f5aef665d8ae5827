"""``ripple stats``: the key second moments the editors read, computed ahead of time, data-parallel
under ``torchrun`` (one process per device; gloo on CPU). See :mod:`ripple.editing.dist_stats`.

    ripple stats --model smollm2 --corpus english --samples 20000 --layers 3 4 5
    torchrun --nproc_per_node 2 -m ripple.cli stats --model M --corpus passages.txt --samples 100000 --layers 4
"""

from __future__ import annotations


def add_parser(sub) -> None:
    from ripple.commands.options import add_model_argument, count, natural, ranged  # lazy: start-up
    from ripple.editing.limits import Limit  # lazy: start-up

    p = sub.add_parser("stats", help="key second moments for the editors, ahead of time (data-parallel under "
                       "torchrun)")
    add_model_argument(p)
    p.add_argument("--corpus", default=None, help="the statistics corpus, as --stats-corpus takes it (a text file, "
                   "hf:NAME, samples:N, graph, english; default: the model's default)")
    p.add_argument("--samples", type=ranged(Limit(1, 10**9, integer=True, text="a whole number from 1 to 1000000000")),
                   default=None, help="tokens to take (default: the editors' "
                   "stats_samples for this model)")
    p.add_argument("--layers", type=natural, nargs="+", default=None, help="layers (default: every layer ROME "
                   "and MEMIT edit on this model)")
    p.add_argument("--batch-size", type=count, default=64, help="passages per forward pass (default 64)")
    p.add_argument("--save-every", type=natural, default=20, help="save the partial sums every this many "
                   "batches, to go on after a stop (0: never; default 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os  # lazy: start-up

    from ripple.commands.options import model_kwargs  # lazy: start-up
    from ripple.editing.corpora import load_corpus  # lazy: start-up
    from ripple.editing.dist_stats import cache_path, init_from_env, rank_device, second_moments  # lazy: start-up
    from ripple.editing.setup import load_setup  # lazy: start-up
    from ripple.errors import RippleError  # lazy: start-up

    distributed = init_from_env()
    setup = load_setup(args.model, context=False, **model_kwargs(args))
    if distributed and rank_device().type == "cuda":
        setup.model.to(rank_device())
    n_layers = setup.spec.n_layers(setup.model)
    layers = args.layers
    if layers is None:
        layers = sorted({x for m in ("rome", "memit") for x in setup.hparams_for(m).layers_for(n_layers)})
    bad = [x for x in layers if x >= n_layers]
    if bad:
        raise RippleError(f"--layers {bad[0]} is out of range for this {n_layers}-block model; use 0..{n_layers - 1}")
    samples = args.samples or setup.hparams_for("memit").stats_samples
    corpus = load_corpus(args.corpus, setup.world, setup.model, setup.tok)
    rank = int(os.environ.get("RANK", "0"))
    second_moments(setup.model, setup.tok, setup.spec, layers, corpus.lines, samples,
                         batch_size=args.batch_size, save_every=args.save_every,
                         log=print if rank == 0 else None)
    if rank == 0:
        for layer in layers:
            print(f"layer {layer}: {cache_path(setup.model, setup.tok, layer, corpus.lines, samples)}")
    if distributed:
        import torch.distributed as dist  # lazy: start-up

        dist.destroy_process_group()
    return 0
