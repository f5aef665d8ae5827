"""lm-eval over the in-memory model: evaluate before and after edits, with no reload.

:class:`RippleLM` subclasses lm-eval's ``HFLM`` around a model object (the same object the editors
change in place). :class:`LmEvalBridge` loads the tasks once and evaluates as often as asked:

* deterministic: ``evaluate`` is called directly (``simple_evaluate`` reseeds the global RNGs and
  shells out to git), ``bootstrap_iters=0``, the few-shot seed fixed;
* the caller's random state (python, numpy, torch) and the model's train/eval mode are restored;
* lm-eval's noise (logging, progress bars, ``datasets`` bars) is kept out of ripple's output.

The organism's suite (``organism``, ``organism_mc``, ... see
:mod:`ripple.evaluate.organism_tasks`) and the English suite for real models (``english``,
``english_agreement``, ... see :mod:`ripple.evaluate.english_tasks`) are local; other names are
lm-eval's own tasks, which need their datasets cached locally when the hub is offline (a one-line
error says so).

::

    bridge = LmEvalBridge(model, tok, ["organism"], world=world)
    bridge.evaluate()
    # -> {'organism_mc': {'acc': 0.99, 'acc_norm': 0.99}, 'organism_cloze': {...}, ...}
"""

from __future__ import annotations

import contextlib
import io
import logging

from ripple.devices import input_device
from ripple.errors import RippleError
from ripple.evaluate.english_tasks import write_english_tasks
from ripple.evaluate.offline import ensure_offline_env
from ripple.evaluate.organism_tasks import write_organism_tasks
from ripple.modes import held

ORGANISM_PREFIX = "organism"
ENGLISH_PREFIX = "english"
LOCAL_PREFIXES = (ORGANISM_PREFIX, ENGLISH_PREFIX)


def _hflm():
    try:
        from lm_eval.models.huggingface import HFLM  # lazy: heavy
    except ImportError as exc:
        raise RippleError(f"the lm-eval bridge needs lm-eval and accelerate ({exc.name} is missing); "
                          "reinstall ripple (pip install -e .) or pip install lm-eval==0.4.13 accelerate") from None
    return HFLM


@contextlib.contextmanager
def quiet_lm_eval():
    """Silence lm-eval, datasets and their progress bars (Python-level stdout/stderr and loggers)."""
    names = ("lm-eval", "lm_eval", "datasets", "fsspec", "filelock", "accelerate", "transformers")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield sink
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def make_lm(model, tok, batch_size: int = 64):
    """A :class:`RippleLM` around the in-memory model (built quietly, its state preserved)."""
    HFLM = _hflm()

    class RippleLM(HFLM):
        """HFLM over a model object, with its progress bars off."""

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=True)

    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    device = input_device(model)
    with held(model, rng=True), quiet_lm_eval():
        lm = RippleLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=str(device))
    lm._device = device  # HFLM takes model.device, its first parameter's: on meta when that is offloaded
    return lm


def _metrics(row: dict) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
            continue
        out[key.split(",")[0]] = float(value)
    return out


class LmEvalBridge:
    """Tasks loaded once, evaluated on the model's current weights each time :meth:`evaluate` runs."""

    def __init__(self, model, tok, tasks, world=None, batch_size: int = 64, limit: int | None = None,
                 include_path: str | None = None):

        ensure_offline_env()
        self.model, self.tok, self.limit = model, tok, limit
        self.tasks = list(tasks)
        if not self.tasks:
            raise RippleError("no lm-eval tasks given; name at least one (e.g. organism)")
        include = [include_path] if include_path else []
        if any(t.startswith(ORGANISM_PREFIX) for t in self.tasks):
            if world is None or world.kind != "synthetic":
                raise RippleError("the organism tasks need a model with a world.json (the organism); "
                                  "for other models name lm-eval tasks such as hellaswag")

            directory, _ = write_organism_tasks(world)
            include.append(str(directory))
        if any(t.startswith(ENGLISH_PREFIX) for t in self.tasks):

            directory, _ = write_english_tasks()
            include.append(str(directory))
        self.task_dict = self._load(include)
        self.lm = make_lm(model, tok, batch_size)

    def _load(self, include: list[str]):
        from lm_eval.tasks import TaskManager  # lazy: heavy

        local_only = all(t.startswith(LOCAL_PREFIXES) for t in self.tasks)
        with quiet_lm_eval():
            tm = TaskManager(include_path=include or None, include_defaults=not local_only)
            known = set(tm.all_tasks)
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            raise RippleError(f"unknown lm-eval task {unknown[0]!r}; use organism (or organism_mc, organism_cloze, "
                              "organism_ppl, organism_skill) on the organism, english (or one of its tasks, e.g. "
                              "english_agreement) on a real English model, or an lm-eval task name such as hellaswag")
        loaded = {}
        for name in self.tasks:
            try:
                with quiet_lm_eval():
                    loaded[name] = tm.load([name])
            except Exception as exc:  # offline hub, missing data files: one line, naming the task
                raise RippleError(
                    f"lm-eval task {name!r} cannot load its data ({type(exc).__name__}); the hub is offline, so "
                    "cache the dataset first (run it once with HF_DATASETS_OFFLINE=0 on a connected machine) or "
                    "write a local task YAML with dataset_path: json and pass its directory") from None
        merged = {"tasks": {}, "groups": {}, "group_map": {}}
        for part in loaded.values():
            for key in merged:
                merged[key].update(part.get(key, {}))
        for task in merged["tasks"].values():
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=1234)
        return merged

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}`` on the model as it is now (groups included)."""
        from lm_eval.evaluator import evaluate  # lazy: heavy

        with held(self.model, rng=True), quiet_lm_eval():
            self.model.eval()
            res = evaluate(lm=self.lm, task_dict=self.task_dict, limit=self.limit, bootstrap_iters=0,
                           log_samples=False, verbosity="ERROR")
        out = {name: _metrics(row) for name, row in sorted(res["results"].items())}
        for name in self.task_dict["tasks"]:
            if not out.get(name):
                raise RippleError(f"lm-eval returned no metrics for task {name!r}; check its metric_list")
        return out
