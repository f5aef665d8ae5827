"""The front door: one call to audit an edit, one object for everything else.

>>> import ripple
>>> report = ripple.audit("organism", "rome", [ripple.EditRequest("{} was born in", "Lodro Toudein", "Kraile")])
>>> report.verdict, report.exit_code, report.metrics["efficacy"]
('pass', 0, 1.0)

``report`` is an :class:`AuditReport`: the verdict, its findings, the metrics, the edits, the ripple
graph's summary, and ``save(dir)``, which writes the same ``report.html/md/json`` as ``ripple audit``
(atomically, into a folder ripple owns). For more than one job on one model, load it once:

>>> lab = ripple.load("organism")
>>> delta = lab.edit("memit", [ripple.EditRequest("{} was born in", "Lodro Toudein", "Kraile")])
>>> with lab.edited(delta):                         # applied for the block, restored bit-exactly after
...     lab.answer("Lodro Toudein was born in")
'Kraile'
>>> lab.answer("Lodro Toudein was born in") != 'Kraile'
True

Edits are given as :class:`~ripple.editing.requests.EditRequest` values, as dicts in any accepted
form (CounterFact, ROME, EasyEdit fields), or as the path of a JSON/JSONL file.

An edit made with another tool (an edited checkpoint, a PEFT adapter, a file of tensors) is
audited the same way, against the base; the requests say what it was meant to do (without them the
audit measures what needs none and says so)::

    report = ripple.audit("smollm2", edited="runs/easyedit-ckpt", edits="edits.jsonl")
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ripple.errors import RippleError
from ripple.results import AUDIT_FILES, GRAPH_FILES, AuditOptions, AuditReport, Finding, GraphReport  # noqa: F401 (the front door's names)

if TYPE_CHECKING:
    from ripple.auditing.policy import Policy
    from ripple.editing.delta import EditDelta
    from ripple.editing.requests import EditRequest
    from ripple.editing.setup import EditSetup
    from ripple.gie.measure import ItemState
    from ripple.mitigation.run import Mitigated
    from ripple.stress.run import StressResult

def _requests(edits) -> list:
    """Edit requests from values, dicts in any accepted form, or a JSON/JSONL file's path."""
    from ripple.editing.request_files import load_requests  # lazy: start-up
    from ripple.editing.requests import EditRequest, parse_request  # lazy: start-up

    if isinstance(edits, (str, Path)):
        return load_requests(edits, batch=True)
    if isinstance(edits, (EditRequest, dict)):
        edits = [edits]
    out = [e if isinstance(e, EditRequest) else parse_request(e, f"edit {i}") for i, e in enumerate(edits, 1)]
    if not out:
        raise RippleError("no edit requests given; pass at least one")
    return out


def _overrides(hp: dict) -> list[str]:
    """``{"layers": [5], "v_steps": 20}`` -> ``["layers=[5]", "v_steps=20"]`` (``--set`` overrides)."""
    return [f"{k}={json.dumps(v) if isinstance(v, (list, tuple, dict)) else v}" for k, v in hp.items()]


def _split(options_type, kwargs: dict) -> tuple[Any, dict]:
    """``kwargs`` split into an ``options_type`` (its fields) and the rest (hyperparameters)."""
    names = {f.name for f in fields(options_type)}
    return options_type(**{k: v for k, v in kwargs.items() if k in names}), \
        {k: v for k, v in kwargs.items() if k not in names}


class Lab:
    """A model loaded once with everything ripple's jobs read: tokenizer, architecture row, world or
    knowledge graph, key-statistics corpus and caches (:func:`load` makes one)."""

    def __init__(self, setup: EditSetup, name: str, stats_corpus: str | None = None):
        self.setup, self.name, self._corpus = setup, name, stats_corpus

    model = property(lambda self: self.setup.model)
    tokenizer = property(lambda self: self.setup.tok)
    spec = property(lambda self: self.setup.spec)
    world = property(lambda self: self.setup.world)

    def __repr__(self) -> str:
        world = getattr(self.world, "kind", None)
        return f"Lab({self.name!r}, {self.spec.model_type}, {self.spec.n_layers(self.model)} layers, world={world})"

    @property
    def ctx(self):
        """The editing context (built on first use: it reads the statistics corpus)."""
        if self.setup.ctx is None:
            self.setup.make_context(self._corpus)
        return self.setup.ctx

    def requests(self, edits) -> list[EditRequest]:
        """``edits`` checked against the tokenizer and completed from the world (one-line errors)."""
        return self.setup.complete(_requests(edits))

    def hparams(self, method: str, **hp):
        """``method``'s hyperparameters on this model, with ``hp`` overriding them."""
        return self.setup.hparams_for(method, _overrides(hp))

    def edit(self, method: str, edits, *, mode: str = "batch", chunk: int = 1, force: bool = False,
             **hp) -> EditDelta:
        """Compute an edit as a value: the model is left as it was (apply it with :meth:`edited`)."""
        from ripple.editing.session import edited  # lazy: start-up

        requests = self.requests(edits)
        with edited(self.ctx, method, requests, self.hparams(method, **hp), mode=mode, chunk=chunk,
                    force=force) as run:
            return run.total

    @contextlib.contextmanager
    def edited(self, delta: EditDelta):
        """The model with ``delta`` applied for the block, restored bit-exactly however it ends."""
        with delta.applied(self.model):
            yield self

    def answer(self, prompt: str, max_new_tokens: int = 6) -> str:
        """The answer the model's greedy continuation of ``prompt`` gives: the longest name of its
        world it starts with, else its first word (:func:`~ripple.editing.setup.said_answer`)."""
        from ripple.editing.setup import greedy_text, said_answer  # lazy: start-up

        names = [n for e in self.world.entities.values() for n in (e.name, *e.aliases)] if self.world else []
        return said_answer(greedy_text(self.model, self.tokenizer, prompt, max_new_tokens), names)

    def audit(self, method: str, edits, *, policy: Policy | str | None = None, probes: str | None = None,
              **kwargs) -> AuditReport:
        """Audit ``edits`` made with ``method`` as ``ripple audit`` does (the same measurements and
        verdict; the model is restored afterwards), returning an :class:`AuditReport`. ``kwargs``:
        :class:`AuditOptions` fields (``k=3``, ``tasks=["organism"]``, ``mitigate="sir"``, ...) and
        the editor's hyperparameters (``layers=[5]``)."""
        opts, hp = AuditOptions.split(kwargs)
        return self._audit(method, edits, policy, probes, opts, hp)

    def load_edited(self, path, kind: str = "auto") -> EditDelta:
        """An edit made elsewhere (an edited checkpoint directory, a PEFT adapter directory, ripple's
        ``delta.safetensors``, a file of new weights or differences: ``kind`` auto, weights or diff)
        as an :class:`~ripple.editing.delta.EditDelta` against this model, which is left as it is."""
        from ripple.editing.external import load_edited  # lazy: start-up

        return load_edited(self.model, path, kind)

    def audit_edited(self, edited, edits=None, *, kind: str = "auto", policy: Policy | str | None = None,
                     probes: str | None = None, **kwargs) -> AuditReport:
        """Audit an edit made elsewhere (``edited``: a path :meth:`load_edited` reads, or an
        ``EditDelta``) as ``ripple audit --edited`` does; ``edits``: what it was meant to do (the
        requests; None: the audit measures what needs no request and its verdict says what it could
        not). ``kwargs``: :class:`AuditOptions` fields."""
        opts, hp = AuditOptions.split(kwargs)
        if hp:
            raise RippleError(f"{', '.join(sorted(hp))}: not an audit option (an edit made elsewhere has no editor "
                              f"hyperparameters); options are {', '.join(f.name for f in fields(AuditOptions))}")
        from ripple.editing.delta import EditDelta  # lazy: start-up

        delta = edited if isinstance(edited, EditDelta) else self.load_edited(edited, kind)
        return self._audit(None, edits, policy, probes, opts, {}, delta)

    def external(self, delta: EditDelta) -> None:
        """Make ``delta`` (an edit made elsewhere) the setup's edit: method ``external``, its blocks as
        the edit's layers, the model's own editors' reading positions."""
        from ripple.editing.external import EXTERNAL, external_hparams  # lazy: start-up

        self.setup.method, self.setup.hp = EXTERNAL, external_hparams(delta, self.spec, self.hparams("rome"))

    def _audit(self, method: str | None, edits, policy, probes, opts: AuditOptions, hp: dict,
               delta: EditDelta | None = None) -> AuditReport:
        from ripple.auditing.policy import load_policy  # lazy: start-up
        from ripple.outputs import shown_files  # lazy: start-up

        if isinstance(policy, (str, Path)):
            policy = load_policy(policy)
        setup = self.setup
        if delta is None:
            hp = {**hp, **({"seed": opts.seed} if opts.seed is not None else {})}
            setup.method, setup.hp = method, self.hparams(method, **hp)
        setup.requests = self.requests(edits) if edits is not None else []
        work = Path(tempfile.mkdtemp(prefix="ripple-audit-"))
        try:
            report = self.write_audit(work / "out", policy, probes, opts, delta=delta)
            return AuditReport.from_report(report, shown_files(work / "out"))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def write_audit(self, out, policy: Policy | None = None, probes: str | None = None,
                    opts: AuditOptions = AuditOptions(), workers: int = 1, build=None,
                    delta: EditDelta | None = None) -> dict:
        """Audit the loaded setup's requests with its editor and hyperparameters and write the
        report into ``out`` as ``ripple audit --out`` does (the CLI runs this); returns the report.
        ``workers`` > 1: a batch's audits in that many processes, each with the inputs ``build(i)``
        loads (:mod:`ripple.auditing.parallel`). ``delta``: an edit made elsewhere, audited as
        given (one audit of all the requests together)."""
        if delta is not None:
            self.external(delta)
            workers = 1
            if opts.budget is not None:
                from ripple.editing.external import check_budget  # lazy: start-up

                check_budget(delta, self.spec, self.spec.n_layers(self.model), opts.ranker, len(self.setup.requests))
        from ripple.auditing.measure import AuditInputs, MeasureOptions  # lazy: start-up
        from ripple.auditing.policy import DEFAULT_POLICY  # lazy: start-up
        from ripple.auditing.run import AuditConfig, run_audit  # lazy: start-up
        from ripple.evaluate.perplexity import general_sentences_for  # lazy: start-up
        from ripple.gie.graph import check_k  # lazy: start-up

        self.ctx  # noqa: B018 (built before the audit, as the CLI does)
        items = self._items(probes)
        check_k(opts.k, items)
        bridge = None
        if opts.tasks:
            from ripple.evaluate.lm_eval_bridge import LmEvalBridge  # lazy: start-up

            bridge = LmEvalBridge(self.model, self.tokenizer, list(opts.tasks), world=self.world, limit=opts.limit)
        mitigation = None
        if opts.mitigate is not None:
            from ripple.mitigation import mitigation_hparams  # lazy: start-up

            mitigation = (opts.mitigate, mitigation_hparams(opts.mitigate, list(opts.mitigation_set)))
        from ripple.evaluate.generated import modes_for  # lazy: start-up

        measure = MeasureOptions(k=opts.k, force=opts.force, quiet=opts.quiet, budget=opts.budget,
                                 modes=modes_for(self.tokenizer, opts.chat, opts.generate),
                                 **({"ranker": opts.ranker} if opts.ranker else {}))
        inputs = AuditInputs(self.setup, items, general_sentences_for(self.world), bridge)
        cfg = AuditConfig(policy or DEFAULT_POLICY, self.name, measure, mitigation, delta)
        return run_audit(inputs, self.setup.requests, cfg, out, workers=workers, build=build)

    def measure(self, probes: str | None = None, layers=None) -> ItemState:
        """Every probe item's hidden states and answers on the model as it is now (an
        :class:`~ripple.gie.measure.ItemState`; ``probes``: a probe-set file, default the world's)."""
        from ripple.gie.measure import measure_items  # lazy: start-up

        return measure_items(self.model, self.tokenizer, self.spec, self._items(probes), layers)

    def graph(self, method: str, edit, *, probes: str | None = None, **kwargs) -> GraphReport:
        """The ripple graph of one edit, as ``ripple graph`` measures it (the model is restored
        afterwards). ``kwargs``: :class:`~ripple.gie.run.GraphOptions` fields (``k=3``,
        ``budget=0.2``) and the editor's hyperparameters."""
        from ripple.gie.run import GraphOptions  # lazy: start-up

        opts, hp = _split(GraphOptions, kwargs)
        requests = self.requests(edit)
        if len(requests) != 1:
            raise RippleError(f"a ripple graph is of one edit; got {len(requests)}: pass one (audit a batch with audit)")
        return self.graph_for(requests[0], opts, probes, method, self.hparams(method, **hp))

    def graph_for(self, request: EditRequest | None, opts=None, probes: str | None = None, method: str | None = None,
                  hp=None, delta: EditDelta | None = None) -> GraphReport:
        """The ripple graph of ``request`` (checked and completed) with ``method`` and ``hp``, by
        default the loaded setup's editor and hyperparameters (``ripple graph`` runs this); or of
        ``delta``, an edit made elsewhere (``request``: what it meant; None: the graph centres on
        the changed item that drifted most)."""
        from ripple.evaluate.changes import edited_items  # lazy: start-up
        from ripple.gie.graph import check_k  # lazy: start-up
        from ripple.gie.run import GraphOptions, gie_for_edit  # lazy: start-up
        from ripple.gie.targets import expected_changes, world_edit  # lazy: start-up

        opts = opts or GraphOptions()
        if delta is not None:
            self.external(delta)
            if opts.budget is not None:
                from ripple.editing.external import check_budget  # lazy: start-up

                check_budget(delta, self.spec, self.spec.n_layers(self.model), opts.ranker, int(request is not None))
        method, hp = method or self.setup.method, hp if hp is not None else self.setup.hp
        items, edited_id, expected = self._items(probes), None, set()
        if request is not None:
            items, (edited_id,) = edited_items(items, [request], self.world)  # the edited fact joins
            expected = expected_changes(self.world, world_edit(self.world, request), items)
        check_k(opts.k, items)
        graph, profile = gie_for_edit(self.ctx, method, hp, items, request, opts, edited_id, expected, delta)
        return GraphReport(graph, profile, sorted(expected), request, len(items))

    def graph_edited(self, edited, edit=None, *, kind: str = "auto", probes: str | None = None,
                     **kwargs) -> GraphReport:
        """The ripple graph of an edit made elsewhere (``edited``: a path :meth:`load_edited` reads, or
        an ``EditDelta``); ``edit``: the one request saying what it meant (optional). ``kwargs``:
        :class:`~ripple.gie.run.GraphOptions` fields."""
        from ripple.editing.delta import EditDelta  # lazy: start-up
        from ripple.gie.run import GraphOptions  # lazy: start-up

        opts, rest = _split(GraphOptions, kwargs)
        if rest:
            raise RippleError(f"{', '.join(sorted(rest))}: not a graph option; an edit made elsewhere has no editor "
                              "hyperparameters")
        request = None
        if edit is not None:
            requests = self.requests(edit)
            if len(requests) != 1:
                raise RippleError(f"a ripple graph is of one edit; got {len(requests)} requests: pass one")
            request = requests[0]
        delta = edited if isinstance(edited, EditDelta) else self.load_edited(edited, kind)
        return self.graph_for(request, opts, probes, delta=delta)

    def mitigate(self, method: str, edits, *, mitigation: str = "sir", probes: str | None = None,
                 mitigation_hp: dict | None = None, force: bool = False, **hp) -> Mitigated:
        """Edit, find the damage, revise (``ripple mitigate``'s loop; the model is restored
        afterwards): a :class:`~ripple.mitigation.run.Mitigated` with the plain and revised deltas."""
        from ripple.gie.pipeline import Edit  # lazy: start-up
        from ripple.mitigation import mitigation_hparams  # lazy: start-up

        edit = Edit(method, tuple(self.requests(edits)), self.hparams(method, **hp), force=force)
        return self.mitigate_for(edit, mitigation, mitigation_hparams(mitigation, _overrides(mitigation_hp or {})),
                                 probes)

    def mitigate_for(self, edit, mitigation: str = "sir", hp=None, probes: str | None = None, log=None) -> Mitigated:
        """The mitigation loop for ``edit`` (a :class:`~ripple.gie.pipeline.Edit` of checked
        requests) with ``mitigation``'s hyperparameters ``hp`` (``ripple mitigate`` runs this);
        ``log``: told what is about to be measured."""
        from ripple.evaluate.changes import plan_audit  # lazy: start-up
        from ripple.mitigation.run import mitigate  # lazy: start-up

        items = self._items(probes)
        if log is not None:
            log(f"editing with {edit.method} and measuring {len(items)} probe items before and after")
        plan = plan_audit(self.model, self.tokenizer, self.world, list(edit.requests), items)
        return mitigate(self.ctx, edit, items, self.world, mitigation, hp, plan=plan)

    def stress(self, methods, edits: int = 100, *, edit_file: str | None = None, seed: int = 0,
               **options) -> StressResult:
        """``edits`` edits in sequence with each of ``methods`` (``memit``, ``memit+rect``), measured
        at checkpoints (``ripple stress``; the model is restored afterwards): a
        :class:`~ripple.stress.run.StressResult`. ``options``: :class:`~ripple.stress.run.StressOptions`
        fields (``every=10`` is needed)."""
        from ripple.stress.run import StressOptions, parse_method, run_stress, stress_stream  # lazy: start-up

        names = [methods] if isinstance(methods, str) else list(methods)
        for name in names:
            parse_method(name)
        if "every" not in options:
            raise RippleError("stress needs every=N: how many edits between checkpoints")
        self.ctx  # noqa: B018 (the statistics are read on the unedited model)
        stream, world = stress_stream(self.setup, edits, edit_file, seed)
        return run_stress(self.setup, names, stream, StressOptions(**options), world=world)

    def _items(self, probes):
        from ripple.probes.sets import probe_items  # lazy: start-up

        items = probe_items(probes, self.world)
        self.setup.check_probes(items)
        return items

    def trace(self, prompt: str, subject: str, **options):
        """A causal trace of ``prompt`` (``{}`` marks the subject; :func:`ripple.causal_trace.causal_trace`)."""
        from ripple.causal_trace import causal_trace  # lazy: start-up

        return causal_trace(self.model, self.tokenizer, self.spec, prompt, subject, **options)


def load(model: str = "organism", *, stats_corpus: str | None = None, hparams_file: str | None = None,
         dtype: str | None = None, device: str = "cpu", **placement) -> Lab:
    """Load ``model`` ('organism', 'smollm2', 'gemma3-270m', a .gguf file or a local transformers
    directory) once for every job: a :class:`Lab`. ``stats_corpus``: the key statistics' text (as
    ``--stats-corpus``); ``placement``: ``device_map``, ``max_memory``, ``offload_folder``."""
    from ripple.devices import check_device  # lazy: start-up
    from ripple.editing.setup import load_setup  # lazy: start-up

    check_device(device)
    setup = load_setup(model, hparams_file=hparams_file, context=False, dtype=dtype, device=device, **placement)
    return Lab(setup, str(model), stats_corpus)


def audit(model, method: str | None = None, edits=None, *, edited=None, policy: Policy | str | None = None,
          probes: str | None = None, stats_corpus: str | None = None, **kwargs) -> AuditReport:
    """Audit an edit in one call: load ``model`` (or take a :class:`Lab`), apply ``edits`` with
    ``method`` in the sandbox, measure, restore, and return the :class:`AuditReport` (see the module
    docstring); or, with ``edited`` (a path or an ``EditDelta``), audit an edit made elsewhere
    (``edits``: what it was meant to do, optional). ``kwargs``: :class:`AuditOptions` fields (``k``,
    ``tasks``, ``seed``, ``mitigate``, ``budget``, ...) and hyperparameters such as ``layers=[5]``."""
    if (method is None) == (edited is None):
        raise RippleError("audit needs either method (an editor ripple runs) or edited (an edit made elsewhere), "
                          "not both")
    if method is not None and edits is None:
        raise RippleError(f"no edits given for {method}; pass edits (requests, dicts or a JSON/JSONL file)")
    lab = model if isinstance(model, Lab) else load(model, stats_corpus=stats_corpus)
    if edited is not None:
        return lab.audit_edited(edited, edits, policy=policy, probes=probes, **kwargs)
    return lab.audit(method, edits, policy=policy, probes=probes, **kwargs)
