"""GIE: the ripple graph of one edit (methods.md, "GIE and SIR: our definitions").

::

    graph, profile = gie_for_edit(ctx, "rome", hp, items, request)
    profile["summary"]["n_changed_unintended"]
"""

from ripple.gie.graph import HOP_BUCKETS, SIM_BUCKETS, build_graph, ripple_profile, save_graph
from ripple.gie.measure import ItemState, measure_items
from ripple.gie.run import GraphOptions, find_edited_item, gie_for_edit
from ripple.gie.targets import edited_fact_id

__all__ = ["HOP_BUCKETS", "SIM_BUCKETS", "GraphOptions", "ItemState", "build_graph", "edited_fact_id", "find_edited_item", "gie_for_edit",
           "measure_items", "ripple_profile", "save_graph"]
