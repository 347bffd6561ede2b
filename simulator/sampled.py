"""Mask statistics drawn from their distributions, for synthetic masks, without the masks.

A synthetic mask's entries are independent Bernoulli draws (``synthetic.py``): row r keeps
each weight with probability ``p_r``.  The simulator needs only per-row nonzero counts and,
for each candidate dense/sparse column split, the column densities and each row's nonzeros
in the densest columns (``partition.MaskStats``).  Those are drawn directly:

* row r's nonzeros: ``Binomial(in_features, p_r)`` (exact);
* column j's nonzeros: ``Binomial(out_features, p)`` when every row has the same ``p``
  (exact); with per-row spread a sum of Bernoulli(p_r), drawn from the normal
  approximation ``N(sum p_r, sum p_r (1 - p_r))``, rounded and clipped;
* a row's nonzeros in the ``k`` densest columns: the row's nonzeros split
  multinomially in proportion to the share of all nonzeros that those columns hold
  (approximation: it ignores that a row's own ones make a column denser, a correlation
  of order 1 / out_features).

The draws are seeded like the masks (per op), so results are deterministic.  LLaMA2-70B's
masks would take a minute to materialise bit by bit; these draws take milliseconds.
``--exact-masks`` materialises them instead; tests hold the two to the same cycles within
a stated tolerance.
"""

from __future__ import annotations

import numpy as np

from simulator.config import HardwareConfig
from simulator.partition import MaskStats, split_candidates

__all__ = ["sampled_stats"]


def sampled_stats(keep: np.ndarray, in_f: int, rng: np.random.Generator, hw: HardwareConfig,
                  nm: tuple[int, int] | None = None) -> MaskStats:
    """Statistics of an (out, in) mask whose row r keeps each weight with probability ``keep[r]``
    (an N:M mask, ``nm``: every row keeps exactly in * N / M, each column Binomial(out, N/M))."""
    keep = np.asarray(keep, dtype=np.float64)
    out_f = keep.size
    if nm:
        keep = np.full(out_f, nm[0] / nm[1])
        row_nnz = np.full(out_f, in_f // nm[1] * nm[0], dtype=np.int64)
    else:
        row_nnz = rng.binomial(in_f, keep).astype(np.int64)  # (out,)
    if np.all(keep == keep[0]):
        col_nnz = rng.binomial(out_f, keep[0], size=in_f).astype(np.int64)
    else:
        mean, std = keep.sum(), np.sqrt((keep * (1 - keep)).sum())
        col_nnz = np.clip(np.rint(rng.normal(mean, std, size=in_f)), 0, out_f).astype(np.int64)
    ks = split_candidates(col_nnz / out_f, hw)
    densest = np.sort(col_nnz)[::-1]
    share = np.concatenate([[0], np.cumsum(densest)]) / max(int(densest.sum()), 1)  # share in the top k
    row_dense = np.zeros((len(ks), out_f), dtype=np.int64)
    taken = np.zeros(out_f, dtype=np.int64)
    prev = 0.0
    for k in sorted(ks):  # nested splits: thin the rest of each row, segment by segment
        q = 1.0 if k == in_f else float(share[k])
        if q > prev:
            p = min(1.0, (q - prev) / (1.0 - prev))
            taken = taken + rng.binomial(row_nnz - taken, p)
            prev = q
        row_dense[ks.index(k)] = row_nnz if k == in_f else taken
    return MaskStats(out_f, in_f, row_nnz, tuple(ks), row_dense)
