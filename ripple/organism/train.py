"""Train the model organism: a GPT-2 trained from scratch on the world's text.

Deterministic from the seeds in :class:`TrainConfig`. Writes a transformers directory
(``config.json``, ``model.safetensors``, ``tokenizer.json``) plus ``world.json`` and
``train_config.json``, so the result loads with ``AutoModelForCausalLM`` alone::

    python -m ripple.organism.train --out /tmp/organism          # the shipped recipe
    python -m ripple.organism.train --out /tmp/o --set n_layer=6 n_embd=192
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ripple.loading import save_model
from ripple.organism.tokenizer import build_tokenizer
from ripple.world.corpus import CorpusConfig, training_text
from ripple.world.generate import WorldConfig, build_world
from ripple.world.schema import RELATIONS, TWO_HOPS


@dataclass(frozen=True)
class TrainConfig:
    world: WorldConfig = field(default_factory=lambda: WorldConfig(n_persons=160))
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    n_layer: int = 6
    n_embd: int = 192
    n_head: int = 6
    mlp_ratio: int = 4
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 4000
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    threads: int = 2

    def with_overrides(self, pairs: list[str]) -> "TrainConfig":
        """``["n_layer=6", "world.name_tokens=3"]`` -> a new config; a name that is no field, a value
        of the wrong type or outside :data:`TRAIN_LIMITS` is a one-line ``ValueError``.

        >>> TrainConfig().with_overrides(["steps=10", "world.n_persons=20"]).steps
        10
        >>> TrainConfig().with_overrides(["steps=10000000000"])
        Traceback (most recent call last):
        ...
        ValueError: steps=10000000000: must be a whole number from 1 to 1000000
        """
        cfg = self
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"{pair!r} is not NAME=VALUE")
            if key not in _field_names():
                raise ValueError(f"{key!r} is not a TrainConfig field (fields: {', '.join(_field_names())})")
            part, _, sub = key.rpartition(".")
            holder = getattr(cfg, part) if part else cfg
            typ = {f.name: f.type for f in fields(holder)}[sub]
            try:
                cast = _cast(typ, value)
            except ValueError:
                raise ValueError(f"{pair}: must be {'a whole number' if typ in (int, 'int') else 'a number'}") from None
            lo, hi = TRAIN_LIMITS.get(key, (None, None))
            if lo is not None and not (math.isfinite(cast) and lo <= cast <= hi):
                kind = "a whole number" if isinstance(cast, int) else "a number"
                raise ValueError(f"{pair}: must be {kind} from {lo} to {hi}")
            holder = replace(holder, **{sub: cast})
            cfg = replace(cfg, **{part: holder}) if part else holder
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} is not a multiple of n_head={cfg.n_head}")
        return cfg


#: The range of every number a ``--set`` may give (past them training would not end in a session, or
#: would not fit in memory, or the world could not be built).
TRAIN_LIMITS: dict[str, tuple[float, float]] = {
    "n_layer": (1, 48), "n_embd": (8, 4096), "n_head": (1, 64), "mlp_ratio": (1, 16), "seq_len": (8, 4096),
    "batch_size": (1, 4096), "steps": (1, 1_000_000), "lr": (1e-8, 1.0), "warmup": (0, 1_000_000),
    "weight_decay": (0.0, 1.0), "seed": (0, 2**32 - 1), "threads": (1, 256),
    "world.seed": (0, 2**32 - 1), "world.n_continents": (1, 20), "world.n_countries": (1, 500),
    "world.cities_per_country": (1, 20), "world.n_languages": (1, 200), "world.n_companies": (1, 2000),
    "world.n_universities": (1, 2000), "world.n_persons": (1, 20000), "world.first_names": (1, 5000),
    "world.last_names": (1, 5000), "world.name_tokens": (1, 4), "world.heldout_two_hop_frac": (0.0, 1.0),
    "world.alias_fact_frac": (0.0, 1.0), "world.citizen_of_birth_country": (0.0, 1.0),
    "corpus.seed": (0, 2**32 - 1), "corpus.lead_in_paraphrases": (0, 20), "corpus.bios_per_person": (0, 50),
    "corpus.profiles_per_subject": (0, 50), "corpus.alias_fact_templates": (0, 20),
    "corpus.counting_lines": (0, 100_000), "corpus.addition_repeats": (0, 50),
}


def _field_names() -> list[str]:
    cfg = TrainConfig()
    return [f.name for f in fields(cfg) if f.name not in ("world", "corpus")] + [
        f"{part}.{f.name}" for part in ("world", "corpus") for f in fields(getattr(cfg, part))]


def _cast(typ, value: str):
    name = typ if isinstance(typ, str) else typ.__name__
    return {"int": int, "float": float}.get(name, str)(value)


def _pack(units: list[list[int]], seq_len: int, eos: int, rng: random.Random):
    """Shuffle units and pack them into rows of ``seq_len`` (``unit EOS unit EOS ...``)."""
    import torch  # lazy: heavy

    order = units[:]
    rng.shuffle(order)
    rows, labels, cur = [], [], []
    for u in order:
        u = u[: seq_len - 1] + [eos]
        if len(cur) + len(u) > seq_len:
            rows.append(cur + [eos] * (seq_len - len(cur)))
            labels.append(cur + [-100] * (seq_len - len(cur)))
            cur = []
        cur = cur + u
    if cur:
        rows.append(cur + [eos] * (seq_len - len(cur)))
        labels.append(cur + [-100] * (seq_len - len(cur)))
    return torch.tensor(rows), torch.tensor(labels)


def train(cfg: TrainConfig, out_dir: str | Path, log=print) -> Path:
    """Train per ``cfg`` and save the organism to ``out_dir``; returns the directory."""
    import torch  # lazy: heavy
    from transformers import GPT2Config, GPT2LMHeadModel  # lazy: heavy


    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    world = build_world(cfg.world)
    text = training_text(world, cfg.corpus)
    names = [n for e in world.entities.values() for n in (e.name, *e.aliases)]
    template_words = [t for r in RELATIONS.values() for t in r.templates] + [
        t for th in TWO_HOPS.values() for t in th.templates]
    extra = [w for s in names + template_words for w in s.replace("{}", "").split()] + [str(i) for i in range(64)]
    tok = build_tokenizer(text, extra)
    units = [tok(t, add_special_tokens=False)["input_ids"] for t in text]
    mconf = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_inner=cfg.mlp_ratio * cfg.n_embd, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(mconf)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    log(f"organism: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, vocab {len(tok)}, "
        f"{len(text)} training units")
    rows, labels = _pack(units, cfg.seq_len, tok.eos_token_id, rng)
    pos, t0 = 0, time.time()
    model.train()
    for step in range(cfg.steps):
        if pos + cfg.batch_size > len(rows):
            rows, labels = _pack(units, cfg.seq_len, tok.eos_token_id, rng)
            pos = 0
        x, y = rows[pos : pos + cfg.batch_size], labels[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:6.0f}s")
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, tok, out)
    (out / "world.json").write_text(json.dumps(world.to_dict(), indent=1))
    (out / "train_config.json").write_text(json.dumps(asdict(cfg) | {"train_seconds": round(time.time() - t0)},
                                                      indent=1))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", nargs="*", default=[], help="overrides such as n_layer=6 world.name_tokens=3")
    args = ap.parse_args(argv)
    cfg = TrainConfig().with_overrides(args.set)
    train(cfg, args.out)


if __name__ == "__main__":
    main()
