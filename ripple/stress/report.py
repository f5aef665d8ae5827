"""The stress run's plot (capability against the number of edits, one line per method) and table.

::

    plot_stress(curves, "out/stress.png"); print(stress_table(curves))
"""

from __future__ import annotations

from ripple.io import atomic_savefig

PANELS = (("edit_success", "edit success so far (P(new) > P(current))", False),
          ("untouched_accuracy", "accuracy on facts no edit touches", False),
          ("perplexity_ratio", "general perplexity / unedited", True),
          ("weight_drift", "accumulated edit, max ||W - W0|| / ||W0||", True),
          ("task", "lm-eval task score", False))


def task_score(row: dict) -> float | None:
    """One number from a checkpoint's lm-eval results: the organism group's acc, else the mean of
    every task's acc."""
    tasks = row.get("tasks")
    if not tasks:
        return None
    if "organism" in tasks and "acc" in tasks["organism"]:
        return tasks["organism"]["acc"]
    accs = [m["acc"] for m in tasks.values() if "acc" in m]
    return sum(accs) / len(accs) if accs else None


def _success(row: dict) -> str:
    """A checkpoint's edit success in each answer mode measured: race / generated (/ chat)."""
    modes = [row.get("edit_success"), row.get("edit_success_gen")]
    modes += [row["edit_success_chat"]] if row.get("edit_success_chat") is not None else []
    return " / ".join(_fmt(v) for v in modes)


def _value(row: dict, key: str):
    return task_score(row) if key == "task" else row.get(key)


def plot_stress(curves: dict[str, dict], path, collapse_ratio: float | None = None) -> None:
    import matplotlib  # lazy: heavy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: heavy

    panels = [p for p in PANELS if any(_value(r, p[0]) is not None for c in curves.values() for r in c["checkpoints"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    colours = {}
    for name, curve in curves.items():
        base = curve["method"]
        colour = colours.setdefault(base, f"C{len(colours)}")
        style = "--" if curve.get("rect") else "-"
        for ax, (key, title, log) in zip(axes[0], panels):
            pts = [(r["edits"], _value(r, key)) for r in curve["checkpoints"]
                   if _value(r, key) is not None and not (log and _value(r, key) <= 0)]
            if pts:
                ax.plot(*zip(*pts), style, color=colour, marker=".", label=name)
            if curve.get("collapse") and key == "perplexity_ratio":
                ax.axvline(curve["collapse"]["edits"], color=colour, alpha=0.3, linestyle=style)
    for ax, (key, title, log) in zip(axes[0], panels):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sequential edits")
        if log:
            from matplotlib.ticker import FuncFormatter  # lazy: heavy

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            if collapse_ratio and key == "perplexity_ratio":
                ax.axhline(collapse_ratio, color="red", linewidth=0.8, label=f"alarm ({collapse_ratio:g}x)")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    for ax, (key, _, _) in zip(axes[0], panels):
        if key == "perplexity_ratio" and collapse_ratio:
            ax.legend(handles=[h for h in ax.get_lines() if h.get_label().startswith("alarm")], fontsize=7)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)


def _fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def stress_table(curves: dict[str, dict]) -> str:
    """Markdown: per method, the collapse point and the last checkpoint's numbers."""
    lines = ["| method | edits | perplexity alarm | capability collapse | edit success (race / generated / chat) "
             "| untouched facts "
             "| perplexity ratio | task score | accumulated edit ‖W−W₀‖/‖W₀‖ | updates over the guard |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in curves.items():
        first, last = c["checkpoints"][0], c["checkpoints"][-1]
        col, cap = c["collapse"], c.get("capability_collapse")
        collapse = f"at {col['edits']} ({col['perplexity_ratio']:.3g}x)" if col else "none"
        capability = f"at {cap['edits']} ({cap['task_score']:.3g})" if cap else ("none" if task_score(first) else "-")
        g = c["guard_exceeded"]
        guard = f"{g['count']} (first at {g['first']})" if g["count"] else "0"
        lines.append(f"| {name} | {last['edits']} | {collapse} | {capability} | {_success(last)} | "
                     f"{_fmt(first.get('untouched_accuracy'))} → {_fmt(last.get('untouched_accuracy'))} | "
                     f"{_fmt(last['perplexity_ratio'])} | {_fmt(task_score(first))} → {_fmt(task_score(last))} | "
                     f"{_fmt(last.get('weight_drift'))} | {guard} |")
    return "\n".join(lines) + "\n"


def _md_table_html(md: str) -> str:
    """A Markdown table (as :func:`stress_table` writes it) as an HTML table."""
    import html  # lazy: start-up

    lines = [line.strip().strip("|").split(" | ") for line in md.strip().splitlines()]
    head, body = lines[0], lines[2:]
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in row)  # noqa: E731
    return (f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>"
            + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in body) + "</tbody></table>")


def chart_points(checkpoints: list[dict], key: str, log: bool) -> list[list]:
    """``[[edits, value], ...]`` of one panel: measured values only (a NaN perplexity of a collapsed
    model is a gap, as is a value a log axis cannot show)."""
    import math  # lazy: start-up

    out = []
    for r in checkpoints:
        v = _value(r, key)
        if isinstance(v, (int, float)) and math.isfinite(v) and not (log and v <= 0):
            out.append([r["edits"], v])
    return out


def stress_html(curves: dict[str, dict], collapse_ratio: float | None = None, png: bytes | None = None) -> str:
    """``stress.html``: one chart per measured panel (hover: every method's value at that number of
    edits; the perplexity alarm marked), the table, and the PNG for readers without scripts. One
    self-contained file that opens offline."""
    import base64  # lazy: start-up
    import html  # lazy: start-up

    from ripple.interactive import line_chart, page  # lazy: start-up

    parts = ["<h1>ripple stress: capability against the number of edits</h1>",
             f"<p>{len(curves)} run(s): {html.escape(', '.join(curves))}. Hover a chart for each run's value at a checkpoint; "
             "drag or scroll inside it to zoom.</p>"]
    for key, title, log in PANELS:
        series = [{"name": name, "points": chart_points(c["checkpoints"], key, log)} for name, c in curves.items()]
        if not any(s["points"] for s in series):
            continue
        marks = []
        if key == "perplexity_ratio":
            marks = [{"x": c["collapse"]["edits"], "label": f"{name}: alarm"} for name, c in curves.items()
                     if c.get("collapse")]
        caption = f"alarm at {collapse_ratio:g}x the unedited perplexity" if key == "perplexity_ratio" and collapse_ratio else None
        parts.append(line_chart(f"stress-{key}", title, "sequential edits", title, series, caption=caption,
                                marks=marks, y_log=log))
    parts.append("<h2>At the last checkpoint</h2>" + _md_table_html(stress_table(curves)))
    if png:
        parts.append('<noscript><img alt="stress curves" src="data:image/png;base64,'
                     + base64.b64encode(png).decode("ascii") + '"></noscript>')
    css = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:1100px}"
           "table{border-collapse:collapse;font-size:.9em} th,td{border:1px solid #d0d7de;padding:.2em .5em}")
    return page("ripple stress", parts, css)
