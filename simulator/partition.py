"""Mask statistics and the ViTCoD dense/sparse column split.

ViTCoD (arXiv 2210.09573, Sec. IV) reorders the columns of a sparse matrix so that
the denser columns run on a dense engine (zeros included) and the sparser ones on
a sparse engine that skips zeros.  Here the matrix is a Linear weight (out, in):
column j is input feature j, and its density is the fraction of kept weights in it.

Everything is one or two vectorised numpy passes over the bool mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig

__all__ = ["MaskStats", "mask_stats", "split_candidates", "AUTO_THRESHOLDS"]

# Column-density thresholds tried by column_split="auto", besides "all sparse" and
# "all dense".  A column run densely at density <= 0.55 wastes almost half of its
# MACs; denser splits than that are only tried through the all-dense candidate
# (which also keeps the statistics of near-uniform masks to two cheap passes).
AUTO_THRESHOLDS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)


@dataclass(frozen=True)
class MaskStats:
    """Per-row nonzero counts of one mask, for each candidate dense/sparse split.

    ``dense_cols[c]`` columns (the densest ones) go to the dense engine under
    candidate c, and ``row_nnz_dense[c]`` (out,) counts each row's nonzeros in them.
    """

    out_features: int
    in_features: int
    row_nnz: np.ndarray  # (out,)
    dense_cols: tuple[int, ...]
    row_nnz_dense: np.ndarray  # (candidates, out)

    @property
    def nnz(self) -> int:
        return int(self.row_nnz.sum())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / (self.out_features * self.in_features)

    def row_nnz_sparse(self, candidate: int) -> np.ndarray:
        return self.row_nnz - self.row_nnz_dense[candidate]


def split_candidates(col_density: np.ndarray, hw: HardwareConfig) -> list[int]:
    """Numbers of densest columns sent to the dense engine that the policy allows."""
    n = col_density.size
    if hw.column_split == "all-sparse":
        return [0]
    if hw.column_split == "all-dense":
        return [n]
    if hw.column_split == "threshold":
        return [int((col_density > hw.dense_column_threshold).sum())]  # strictly denser, as BESA's code
    ks = {0, n} | {int((col_density > t).sum()) for t in AUTO_THRESHOLDS}
    return sorted(ks)


def mask_stats(mask: np.ndarray, hw: HardwareConfig) -> MaskStats:
    """Statistics of a bool keep-mask (out, in) for every candidate column split."""
    out_f, in_f = mask.shape
    m8 = mask.view(np.uint8)
    row_nnz = m8.sum(axis=1, dtype=np.int64)  # (out,)
    col_nnz = m8.sum(axis=0, dtype=np.int64)  # (in,)
    order = np.argsort(-col_nnz, kind="stable")  # densest columns first
    ks = split_candidates(col_nnz / out_f, hw)
    inner = [k for k in ks if 0 < k < in_f]
    row_dense = np.zeros((len(ks), out_f), dtype=np.int64)
    if inner:
        # Nonzeros per row in each run of columns between consecutive split points,
        # then a running sum gives the per-row count in the first k sorted columns.
        sub = m8[:, order[: inner[-1]]]
        parts = np.add.reduceat(sub, [0] + inner[:-1], axis=1, dtype=np.int64)  # (out, len(inner))
        cum = np.cumsum(parts, axis=1)
        for j, k in enumerate(inner):
            row_dense[ks.index(k)] = cum[:, j]
    if in_f in ks:
        row_dense[ks.index(in_f)] = row_nnz
    return MaskStats(out_f, in_f, row_nnz, tuple(ks), row_dense)
