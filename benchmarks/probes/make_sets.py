"""Build the bundled probe sets (format: ``probes/README.md``).

    python -m benchmarks probes/make_sets                # writes probes/organism.jsonl, probes/real_world.jsonl

``organism.jsonl``: every fact of the organism's world (``world_probe_set``).
``real_world.jsonl``: every fact of the real-world graph (``ripple.world.real``, built from the
hand-curated table ``ripple/data/real_world_facts.txt``), linked the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import ROOT

PROBES = ROOT / "probes"


def real_world_probe_set():
    """Every fact of the bundled real-world graph (``ripple.world.real``) on its relation's first template."""
    from ripple.probes.sets import world_probe_set
    from ripple.world.real import real_world

    return world_probe_set(real_world())


def main(argv=None) -> None:
    from ripple.organism.evaluate import load_world
    from ripple.probes.sets import save_probe_set, world_probe_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=PROBES)
    args = ap.parse_args(argv)
    for name, items in [("organism", world_probe_set(load_world())), ("real_world", real_world_probe_set())]:
        save_probe_set(items, args.out / f"{name}.jsonl")
        print(f"{args.out / name}.jsonl: {len(items)} items, {sum(len(i.links) for i in items)} links")


if __name__ == "__main__":
    main()
