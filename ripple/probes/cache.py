"""Recorded activations: ``site@position`` -> float32 ``[n_items, hidden]``, one row per probe item.

::

    cache = record(model, tok, spec, items)          # see ripple.probes.record
    cache["blocks.3.out@subject_last"].shape
    # -> torch.Size([936, 192])
    cache.save("before.safetensors"); after = record(edited, tok, spec, items)
    cache.diff(after)["blocks.3.out@last"]["cosine_distance"]   # per item
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ripple.errors import RippleError
from ripple.io import atomic_write_bytes

_FORMAT = "ripple.activation_cache.v1"


class ActivationCache(Mapping):
    """An immutable mapping of site names to ``[n_items, hidden]`` float32 CPU tensors.

    ``ids`` optionally names the rows (probe item ids); :meth:`diff` and :meth:`concat` check them.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], ids: Sequence[str] | None = None):
        self._t = {site: t.detach().to("cpu", torch.float32).contiguous() for site, t in tensors.items()}
        self.ids = tuple(ids) if ids is not None else None
        rows = {t.shape[0] for t in self._t.values()} | ({len(self.ids)} if self.ids is not None else set())
        if any(t.dim() != 2 for t in self._t.values()) or len(rows) > 1:
            shapes = {site: tuple(t.shape) for site, t in self._t.items()}
            raise RippleError(f"activation cache tensors must all be [n_items, hidden] with one n_items "
                              f"(and as many ids); got {shapes} and {len(self.ids or ())} ids")
        self.n_items = rows.pop() if rows else 0

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self._t)

    def __getitem__(self, site: str) -> torch.Tensor:
        if site not in self._t:
            raise KeyError(f"no site {site!r} in this cache; recorded sites: {', '.join(self._t)}")
        return self._t[site]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return f"ActivationCache({self.n_items} items, {len(self)} sites)"

    # --- files --------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write one safetensors file atomically (site order and row ids in its metadata)."""

        meta = {"format": _FORMAT, "sites": json.dumps(list(self._t))}
        if self.ids is not None:
            meta["ids"] = json.dumps(list(self.ids))
        atomic_write_bytes(path, save(self._t, metadata=meta))

    @classmethod
    def load(cls, path) -> "ActivationCache":

        path = Path(path)
        if not path.is_file():
            raise RippleError(f"activation cache {path} does not exist; write one with ActivationCache.save")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _FORMAT:
                    raise RippleError(f"{path} is not a ripple activation cache; write one with "
                                      "ActivationCache.save")
                tensors = {site: f.get_tensor(site) for site in json.loads(meta["sites"])}
        except (SafetensorError, OSError, ValueError) as exc:
            raise RippleError(f"cannot read activation cache {path}: {str(exc).splitlines()[0]}") from None
        ids = json.loads(meta["ids"]) if "ids" in meta else None
        return cls(tensors, ids)

    # --- combining ----------------------------------------------------------------------------
    def _check_same_sites(self, other: "ActivationCache") -> None:
        if self.sites != other.sites:
            missing = sorted(set(self.sites) ^ set(other.sites)) or ["(same sites, other order)"]
            raise RippleError(f"activation caches differ in their sites ({', '.join(missing)}); "
                              "record both with the same sites, layers and positions")

    @classmethod
    def concat(cls, caches: Sequence["ActivationCache"]) -> "ActivationCache":
        """Stack caches of the same sites row-wise (streamed chunks in order)."""
        if not caches:
            raise RippleError("nothing to concatenate; pass at least one activation cache")
        for c in caches[1:]:
            caches[0]._check_same_sites(c)
        with_ids = [c.ids is not None for c in caches]
        if any(with_ids) and not all(with_ids):
            raise RippleError("some activation caches carry item ids and some do not; record them alike")
        ids = [i for c in caches for i in c.ids] if all(with_ids) else None
        return cls({s: torch.cat([c[s] for c in caches]) for s in caches[0].sites}, ids)

    def diff(self, other: "ActivationCache") -> dict[str, dict[str, torch.Tensor]]:
        """Per site and item: ``cosine_distance`` (1 - cos) and ``relative_l2`` (‖a-b‖/‖a‖), a = self.

        Computed in float64 (float64 results), so tiny drifts survive. A zero row of ``self`` gives
        relative L2 ``inf`` (0 if the other row is zero too); a zero row on either side has cosine
        distance 1 (0 if both are zero).
        """
        self._check_same_sites(other)
        if self.n_items != other.n_items or (self.ids and other.ids and self.ids != other.ids):
            raise RippleError(f"activation caches hold different items ({self.n_items} vs {other.n_items} "
                              "rows or other ids); record both on the same probe set")
        return {site: row_distances(self[site], other[site]) for site in self.sites}


def row_distances(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """``cosine_distance`` and ``relative_l2`` of each row of ``b`` from the same row of ``a``."""
    a, b = a.double(), b.double()
    na, nb, nd = a.norm(dim=1), b.norm(dim=1), (a - b).norm(dim=1)
    # 1 - cos as half the squared distance of the unit vectors: exact for identical rows, and no
    # cancellation for small drifts.
    cos_d = 0.5 * (a / na.clamp_min(1e-300)[:, None] - b / nb.clamp_min(1e-300)[:, None]).pow(2).sum(1)
    either_zero = (na == 0) | (nb == 0)
    cos_d = torch.where(either_zero, torch.where(nd == 0, 0.0, 1.0).double(), cos_d)
    rel = torch.where(na == 0, torch.where(nd == 0, 0.0, float("inf")).double(), nd / na.clamp_min(1e-300))
    return {"cosine_distance": cos_d, "relative_l2": rel}

