"""``ripple organism show|train``: where the bundled organism lives; train a new one."""

from __future__ import annotations

import json

from ripple.errors import RippleError


def add_parser(sub) -> None:
    org = sub.add_parser("organism", help="the bundled model organism").add_subparsers(dest="action", required=True)
    show = org.add_parser("show", help="where the organism and its world live")
    show.add_argument("--json", action="store_true", help="print JSON (path, world, training config, metrics)")
    show.set_defaults(func=run_show)
    wo = org.add_parser("world", help="export the organism's world as JSON and a GraphML knowledge graph")
    wo.add_argument("--out", required=True)
    wo.set_defaults(func=run_world)
    tr = org.add_parser("train", help="train an organism from scratch (deterministic)")
    tr.add_argument("--out", required=True)
    tr.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="TrainConfig overrides")
    tr.set_defaults(func=run_train)


def run_show(args) -> int:
    from ripple.organism.paths import model_dir, world_path  # lazy: start-up

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


def run_train(args) -> int:
    from ripple.organism.train import TrainConfig, train  # lazy: start-up

    try:
        cfg = TrainConfig().with_overrides(args.set)
    except (KeyError, ValueError) as e:
        raise RippleError(f"bad --set override ({e}); use NAME=VALUE with a TrainConfig field such as n_layer=6")
    from ripple.world.generate import build_world  # lazy: start-up

    try:  # before any training: the world is a pure function of the settings, and cheap
        build_world(cfg.world)
    except (ValueError, IndexError, KeyError, ZeroDivisionError) as e:
        raise RippleError(f"the world these --set values describe cannot be built ({e}); give it more names, "
                          "countries or persons (see 'ripple organism train --help')") from None
    import torch  # lazy: start-up

    from ripple.outputs import MODEL_FILES, check_out, output_unit  # lazy: start-up

    check_out(args.out, writes=("train_config.json", "metrics.json", *MODEL_FILES))
    torch.set_num_threads(args.threads or cfg.threads)
    with output_unit(args.out) as stage:
        train(cfg, stage)
    print(f"wrote {args.out}")
    return 0


def run_world(args) -> int:
    import networkx as nx  # lazy: start-up

    from ripple.io import atomic_write_bytes, atomic_write_json  # lazy: start-up
    from ripple.organism.evaluate import load_world  # lazy: start-up
    from ripple.organism.paths import world_path  # lazy: start-up
    from ripple.outputs import check_out, output_unit  # lazy: start-up

    check_out(args.out, [("organism's world", world_path())], writes=("world.json", "world.graphml"))
    world = load_world()
    g = world.to_networkx()
    for _, data in g.nodes(data=True):
        data["aliases"] = "; ".join(data["aliases"])  # GraphML has no list type
    with output_unit(args.out) as stage:
        atomic_write_json(stage / "world.json", world.to_dict())
        atomic_write_bytes(stage / "world.graphml", "\n".join(nx.generate_graphml(g)).encode())
    out = args.out
    print(f"{g.number_of_nodes()} entities, {g.number_of_edges()} facts; wrote {out}/world.json and world.graphml")
    return 0
