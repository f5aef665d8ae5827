"""How well the organism knows its world: the figures in ``reports/organism.md``.

::

    from ripple.loading import load_model
    model, tok, spec = load_model("organism")
    recall_report(model, tok, load_world())["single_hop_train"]
    # -> 0.999
"""

from __future__ import annotations

from ripple.scoring import accuracy
from ripple.world import queries as Q
from ripple.world.generate import (
    World,
    load_world,  # noqa: E402,F401 (read from here too)
)


def recall_report(model, tok, world: World) -> dict[str, float]:
    """Top-1 accuracy on every test set of the world (greedy, whole answer)."""
    sets = {
        "single_hop_train": Q.single_hop(world),
        "heldout_templates": Q.single_hop(world, heldout=True),
        "alias_seen": Q.alias_queries(world, trained=True),
        "alias_heldout": Q.alias_queries(world, trained=False),
        "two_hop_train": Q.two_hop_queries(world, heldout=False),
        "two_hop_heldout": Q.two_hop_queries(world, heldout=True),
        "counting": Q.counting_queries(),
        "addition": Q.addition_queries(),
    }
    return {name: round(accuracy(model, tok, qs), 4) for name, qs in sets.items()}
