"""The synthetic knowledge world: entities, facts, templates and exact ground truth.

>>> from ripple.world import build_world, WorldConfig
>>> world = build_world(WorldConfig(seed=0))
>>> g = world.to_networkx()
"""

from ripple.world.generate import Entity, Fact, World, WorldConfig, build_world

__all__ = ["Entity", "Fact", "World", "WorldConfig", "build_world"]
