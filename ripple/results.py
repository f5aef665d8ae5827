"""What the front door's jobs return, as typed values: :class:`AuditReport` (with its
:class:`Finding` list), :class:`GraphReport`, and the audit's options, :class:`AuditOptions`.
Each report saves the same files as its command, atomically, into a folder ripple owns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ripple.errors import RippleError

if TYPE_CHECKING:
    from ripple.editing.requests import EditRequest


#: What ``GraphReport.save`` writes (``ripple graph`` adds ``summary.json``).
GRAPH_FILES = ("graph.html", "graph.json", "graph.graphml", "ripple_graph.png", "drift_by_hop.png",
               "drift_vs_similarity.png")

#: What ``AuditReport.save`` writes (the names ``ripple audit`` writes into ``--out``).
AUDIT_FILES = ("report.html", "report.md", "report.json", "graph.json", "ripple_graph.png", "drift_by_hop.png",
               "plain_ripple_graph.png", "plain", "together", "edit-[0-9]*")


@dataclass(frozen=True)
class Finding:
    """One rule of the policy applied to one measured metric."""

    metric: str
    status: str  # pass, warn, fail or skip
    value: float | None
    threshold: float | None
    description: str = ""
    n: int | None = None  # the items the figure rests on
    source: str | None = None  # where its reference answers come from
    note: str | None = None  # not measured (and why), or too few items


@dataclass
class AuditReport:
    """What an audit found: the fields users read, the whole JSON report, and its files."""

    verdict: str  # pass, warn or fail: the worst finding
    exit_code: int  # what ``ripple audit`` exits with (0 pass, 1 fail; warn per the policy)
    findings: list[Finding]
    metrics: dict[str, Any]
    edits: list[dict]
    graph: dict | None  # the ripple graph's summary (drift by hop, most affected items); None for a batch
    report: dict = field(repr=False)  # the whole report.json
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # relative path -> bytes

    @classmethod
    def from_report(cls, report: dict, files: dict[str, bytes] | None = None) -> AuditReport:
        verdict = report["verdict"]
        findings = [Finding(f["metric"], f["status"], f.get("value"), f.get("threshold"),
                            f.get("rule_description", ""), f.get("n"), f.get("source"), f.get("note"))
                    for f in verdict["findings"]]
        return cls(verdict["status"], verdict["exit_code"], findings, dict(report.get("metrics", {})),
                   list(report.get("edits", [])), report.get("gie"), report, dict(files or {}))

    def failing(self) -> list[Finding]:
        """The findings that warn or fail."""
        return [f for f in self.findings if f.status in ("warn", "fail")]

    def to_json(self) -> str:
        """The report as ``ripple audit --json`` prints it."""
        return json.dumps(self.report, indent=2)

    def save(self, directory) -> Path:
        """Write the report's files (``report.html``, ``report.md``, ``report.json``, the figures; a
        batch's ``edit-NN/`` and ``together/``) into ``directory`` as one unit, as ``ripple audit
        --out`` does; never over a file ripple did not write (:mod:`ripple.outputs`)."""
        from ripple.outputs import check_out, output_unit  # lazy: start-up

        if not self.files:
            raise RippleError("this report holds no files to save (it was made without them)")
        check_out(directory, writes=AUDIT_FILES)
        with output_unit(directory) as stage:
            for rel, data in sorted(self.files.items()):
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                (stage / rel).write_bytes(data)
        return Path(directory)


@dataclass(frozen=True)
class AuditOptions:
    """How an audit runs, beside the edit and its hyperparameters (``ripple audit``'s options)."""

    k: int = 5  # kNN edges per probe item in the ripple graph
    tasks: tuple[str, ...] = ()  # lm-eval tasks before and after (e.g. ("organism",))
    limit: int | None = None  # lm-eval: at most this many documents per task
    seed: int | None = None  # the editing seed (a hyperparameter; default 0)
    mitigate: str | None = None  # audit the edit revised by this mitigation (e.g. "sir") beside the plain one
    mitigation_set: tuple[str, ...] = ()  # the mitigation's hyperparameters, NAME=VALUE
    budget: float | None = None  # evaluate only this share of the probe items most at risk
    ranker: str | None = None  # with a budget: the ranker that orders the items (default key_sqrt_margin)
    force: bool = False  # apply an update past the norm guard
    quiet: bool = True  # no progress bars
    chat: bool | None = None  # chat answers: None = when the tokenizer has a chat template; True: required; False: off
    generate: bool = True  # score generated answers beside the teacher-forced race and top-1

    @classmethod
    def split(cls, kwargs: dict) -> tuple[AuditOptions, dict]:
        """``(options, hyperparameters)`` from keyword arguments: the names of this class's fields
        are options, every other name is an editor hyperparameter (``layers=[5]``)."""
        names = {f.name for f in fields(cls)}
        options = {k: v for k, v in kwargs.items() if k in names}
        if isinstance(options.get("tasks"), str):
            options["tasks"] = (options["tasks"],)
        return cls(**options), {k: v for k, v in kwargs.items() if k not in names}


@dataclass
class GraphReport:
    """One edit's ripple graph (:meth:`Lab.graph`): the graph (nodes: probe items with answers and
    drift before/after; edges: hidden-space neighbours and knowledge-graph links), its ripple
    profile, and the items the world's ground truth says must change."""

    graph: Any  # networkx.Graph
    profile: dict
    expected: list[str]
    request: EditRequest | None  # None: an edit made elsewhere with no request (the graph's centre is inferred)
    n_probes: int

    @property
    def summary(self) -> dict:
        return self.profile["summary"]

    def save(self, directory) -> Path:
        """Write ``graph.json``, ``graph.graphml`` and the figures as ``ripple graph`` does, as one unit."""
        from ripple.outputs import check_out, output_unit  # lazy: start-up

        check_out(directory, writes=GRAPH_FILES)
        with output_unit(directory) as stage:
            self.write(stage)
        return Path(directory)

    def write(self, folder: Path) -> None:
        """The graph's files and figures into ``folder`` (a staged output unit)."""
        from ripple.gie import save_graph  # lazy: start-up
        from ripple.gie.plots import plot_drift_by_hop, plot_drift_vs_similarity, plot_ripple_graph  # lazy: start-up

        save_graph(self.graph, folder)
        plot_ripple_graph(self.graph, folder / "ripple_graph.png")
        plot_drift_by_hop(self.profile, folder / "drift_by_hop.png")
        plot_drift_vs_similarity(self.graph, folder / "drift_vs_similarity.png")
        from ripple.gie.page import graph_html  # lazy: start-up
        from ripple.io import atomic_write_text  # lazy: start-up

        images = {name: (folder / name).read_bytes() for name in ("ripple_graph.png", "drift_by_hop.png",
                                                                  "drift_vs_similarity.png")}
        atomic_write_text(folder / "graph.html", graph_html(self.graph, self.profile, self.expected, images))
