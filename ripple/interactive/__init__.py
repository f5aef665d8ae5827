"""Interactive pieces of ripple's HTML reports: the ripple graph and curves, drawn in the reader's
browser by Apache ECharts (inlined: a report is one file that opens offline, from disk).

Why ECharts: reports/interactive/graph_libraries.md (page size, load and draw time of the same
graph in five libraries at 1,000 and 5,000 nodes in headless Chromium, and what each gives for
free). The copy ripple ships is ``ripple/data/vendor/echarts.min.js``, unchanged from npm (its
version, sha256 and licence beside it in ``vendor.json``).

::

    from ripple.interactive import page, graph_payload, graph_section, line_chart
    html = page("title", [graph_section(graph_payload(g, roles), fallback_png=png), line_chart(...)])
"""

from ripple.interactive.charts import bar_chart, line_chart
from ripple.interactive.graph import ROLES, graph_payload, graph_section, item_role
from ripple.interactive.pages import page, page_head

__all__ = ["ROLES", "bar_chart", "graph_payload", "graph_section", "item_role", "line_chart", "page", "page_head"]
