"""The mapping of one matmul onto the buffers: tile sizes, loop order and their DRAM traffic.

A matmul here is ``out[M, N] = act[M, K] @ weight[N, K]^T``: M tokens, N weight rows
(output features), K the reduction.  A tile is ``tm`` tokens x ``tn`` rows x ``tk``
reduction columns, sized so that (the usable half of a double-buffered buffer):

* the weight tile (values, and indices in their own buffer) fits: ``tn`` rows of the
  widest row's bytes scaled by ``tk / K`` (a row's nonzeros are assumed spread evenly
  along K);
* the activation tile ``tm x tk`` fits the activation buffer;
* the partial sums ``tm x tn`` fit the output buffer, so the reduction loop (innermost)
  never spills them: each output is written to DRAM exactly once.  Partial sums are
  held at the output precision (``act_bits``), as SCALE-Sim holds every operand in one
  word size; a wider accumulator would only shrink ``tm x tn``.

Two loop orders keep K innermost (Timeloop/SCALE-Sim style, closed form per candidate):

* ``n>m>k`` (weight rows outermost): a weight tile spanning all of K (``nK = 1``) stays
  resident while every token tile streams past it, so weights are read once; otherwise
  they are re-read for every token tile.  Activations are re-read for every row tile,
  unless all of them fit the activation buffer at once.
* ``m>n>k`` (tokens outermost): a token tile spanning all of K stays resident while
  every weight tile streams past it; weights are re-read for every token tile unless
  all of them fit the weight buffer.

Traffic = weights x (their re-reads) + activations x (theirs) + outputs once.  Every
candidate reads each operand at least once, so no mapping goes below the compulsory
traffic.  The mapping with the fewest DRAM bytes wins (ties: fewer tiles).  Decode
(``M = 1``) keeps its single pass over the weights.  This closed form only picks the
mapping; the SimPy model (``accelerator.py``) executes its tiles and is the source of
latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig

__all__ = ["Mapping", "best_mapping", "candidates"]

ORDERS = ("n>m>k", "m>n>k")


@dataclass(frozen=True)
class Mapping:
    """Tile sizes, loop order and the closed-form DRAM bytes of one matmul."""

    tm: int
    tn: int
    tk: int
    order: str
    weight_reads: int  # times the weights are read from DRAM
    act_reads: int  # times the activations are read
    weight_bytes: float  # DRAM bytes of each operand, reads included
    act_bytes: float
    out_bytes: float
    n_m: int
    n_n: int
    n_k: int

    @property
    def dram_bytes(self) -> float:
        return self.weight_bytes + self.act_bytes + self.out_bytes

    @property
    def tiles(self) -> int:
        return self.n_m * self.n_n * self.n_k

    @property
    def label(self) -> str:
        return f"{self.order} m{self.tm} n{self.tn} k{self.tk}"


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _sizes(total: int) -> list[int]:
    """Tile extents tried along one dimension: the whole, then halving (rounded up) down to 1."""
    out, t = [], total
    while True:
        out.append(t)
        if t == 1:
            return out
        t = _ceil(t, 2)


def candidates(m: int, n: int, k: int, hw: HardwareConfig, row_value_bytes: float, row_index_bytes: float,
               weight_total: float, act_elem_bytes: float, out_elem_bytes: float) -> dict[str, np.ndarray]:
    """Every feasible mapping as arrays (one entry per candidate): tile extents (whole, halves, ...)
    x loop orders, with their reads and DRAM bytes.

    ``row_value_bytes``/``row_index_bytes``: the widest row's bytes over all of K; ``weight_total``:
    all rows' bytes (values and indices) as stored in DRAM.
    """
    w_cap, i_cap = hw.buffer_bytes("weight"), hw.buffer_bytes("index")
    a_cap, o_cap = hw.buffer_bytes("act"), hw.buffer_bytes("out")
    tk = np.array(_sizes(k), dtype=np.int64)[:, None]  # (K sizes, 1)
    frac = tk / k
    rows = np.full(tk.shape, n, dtype=np.int64)
    if row_value_bytes > 0:
        rows = np.minimum(rows, np.floor(w_cap / (row_value_bytes * frac)).astype(np.int64))
    if row_index_bytes > 0:
        rows = np.minimum(rows, np.floor(i_cap / (row_index_bytes * frac)).astype(np.int64))
    tm_max = np.minimum(m, np.floor(a_cap / (tk * act_elem_bytes)).astype(np.int64))
    tm = np.minimum(np.array(_sizes(m), dtype=np.int64)[None, :], tm_max)  # (K sizes, M sizes)
    tm = np.maximum(tm, 1)
    tn = np.minimum(rows, np.floor(o_cap / (tm * out_elem_bytes)).astype(np.int64))
    ok = (rows >= 1) & (tm_max >= 1) & (tn >= 1)
    tk, tm, tn = np.broadcast_to(tk, tm.shape)[ok], tm[ok], tn[ok]
    n_m, n_n, n_k = -(-m // tm), -(-n // np.maximum(tn, 1)), -(-k // tk)
    one = np.ones_like(n_m)
    a_all_fits = m * k * act_elem_bytes <= a_cap
    # n>m>k: weights stay while token tiles pass iff a weight tile spans all of K.
    w_nmk = np.where((n_k == 1) | (n_m == 1), one, n_m)
    a_nmk = np.where((n_n == 1) | ((n_m == 1) & a_all_fits), one, n_n)
    # m>n>k: a token tile stays while weight tiles pass iff it spans all of K.
    a_mnk = np.where((n_n == 1) | (tm * k * act_elem_bytes <= a_cap), one, n_n)
    w_mnk = np.where((n_m == 1) | ((n_k == 1) & (n_n == 1)) | (weight_total <= w_cap), one, n_m)
    cat = np.concatenate
    out = {"tm": cat([tm, tm]), "tn": cat([tn, tn]), "tk": cat([tk, tk]),
           "order": cat([np.zeros_like(tm), np.ones_like(tm)]),
           "weight_reads": cat([w_nmk, w_mnk]), "act_reads": cat([a_nmk, a_mnk]),
           "n_m": cat([n_m, n_m]), "n_n": cat([n_n, n_n]), "n_k": cat([n_k, n_k])}
    out["dram_bytes"] = (out["weight_reads"] * float(weight_total) + out["act_reads"] * (m * k * act_elem_bytes)
                         + m * n * out_elem_bytes)
    return out


def best_mapping(m: int, n: int, k: int, hw: HardwareConfig, row_value_bytes: float, row_index_bytes: float,
                 weight_total: float, act_elem_bytes: float, out_elem_bytes: float) -> Mapping:
    """The candidate with the fewest DRAM bytes (ties: fewer tiles, then the first loop order)."""
    c = candidates(m, n, k, hw, row_value_bytes, row_index_bytes, weight_total, act_elem_bytes, out_elem_bytes)
    if c["tm"].size == 0:
        raise ValueError(
            f"no tiling of a {m}x{k} @ {k}x{n} matmul fits the buffers (weight {hw.weight_sram_kib} KiB, "
            f"index {hw.index_sram_kib} KiB, act {hw.act_sram_kib} KiB, out {hw.out_sram_kib} KiB)")
    tiles = c["n_m"] * c["n_n"] * c["n_k"]
    i = int(np.lexsort((c["order"], tiles, np.round(c["dram_bytes"], 3)))[0])
    w_reads, a_reads = int(c["weight_reads"][i]), int(c["act_reads"][i])
    return Mapping(int(c["tm"][i]), int(c["tn"][i]), int(c["tk"][i]), ORDERS[int(c["order"][i])], w_reads, a_reads,
                   w_reads * float(weight_total), a_reads * m * k * act_elem_bytes, m * n * out_elem_bytes,
                   int(c["n_m"][i]), int(c["n_n"][i]), int(c["n_k"][i]))
