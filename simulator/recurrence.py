"""The accelerator's pipeline for one op as a recurrence over its steps, compiled.

This is the SimPy model of ``accelerator.py`` written as a loop: the DRAM channel is a FIFO
server, so its transfers are served in the order they are requested (load i once load i-1 is
done and a tile buffer is free; with B buffers, buffer i - B frees when step i - B's compute
ends; the write of step s when its compute ends), and step s computes from max(end of step
s-1, end of load s). The same float operations in the same order as the SimPy run give the
same cycles (tests/simulator/test_fast_path.py).

``pipeline`` is plain Python; ``compiled`` is the same function compiled by Numba (a sweep runs it
for every op at every point: in a profile of 8 LLaMA-7B decode points, 1,920 pipelines took 2.5 s as
Python and 0.2 s compiled, array preparation included). Without Numba, ``compiled`` is
the Python function itself, with the same results.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pipeline", "compiled", "warm", "COMPILED", "TIE"]

TIE = -1.0  # returned as the total when the order hangs on a tie that only SimPy can settle


def _compute_through(upto: int, computed: int, busy: float, load_end: np.ndarray, c_end: np.ndarray,
                     steps: np.ndarray) -> tuple[int, float]:
    """Compute ends of the steps before ``upto`` (``computed`` are known): (steps known, busy cycles)."""
    while computed < upto:
        ready = load_end[computed]
        c_end[computed] = (max(c_end[computed - 1], ready) if computed else ready) + steps[computed]
        busy += steps[computed]
        computed += 1
    return computed, busy


def pipeline(loads: np.ndarray, writes: np.ndarray, steps: np.ndarray, nbuf: int,
             t0: float) -> tuple[float, float, float]:
    """(end of the op, cycles a step was computing, cycles the channel was busy), all unrounded;
    the end is ``TIE`` where a write and a load are requested at the same instant in an order that
    depends on SimPy's event queue (the caller then runs SimPy).

    ``loads``/``writes``: each step's transfer cycles (0: nothing moves); ``steps``: its compute
    cycles; ``nbuf``: tile buffers (2 with double buffering); ``t0``: the op's fixed overhead."""
    n = loads.shape[0]
    load_end = np.zeros(n)
    c_end = np.zeros(n)
    port_free = 0.0
    dram_busy = 0.0
    busy = 0.0
    last = t0
    prev_load_end = t0
    computed = 0  # steps whose compute end is known
    i = 0  # next load to serve
    w = 0  # next write to serve
    while i < n or w < n:
        while w < min(i, n) and writes[w] <= 0:  # an empty write never touches the channel
            w += 1
        if w >= n and i >= n:
            break
        has_load = i < n
        load_req = 0.0
        if has_load:
            if i >= nbuf:
                computed, busy = _compute_through(i - nbuf + 1, computed, busy, load_end, c_end, steps)
                load_req = max(prev_load_end, c_end[i - nbuf])
            else:
                load_req = prev_load_end
        if w < i:
            computed, busy = _compute_through(w + 1, computed, busy, load_end, c_end, steps)
        write_first = w < i and (not has_load or c_end[w] < load_req)
        if w < i and has_load and loads[i] > 0 and c_end[w] == load_req:
            # A write and a load requested at the same instant. When the loader was waiting for the
            # buffer that step i - B's end frees, the writers of the steps up to i - B start (urgent
            # events) before the loader resumes; later writers start after it. Otherwise the order
            # hangs on which timeout SimPy created first.
            if not (i >= nbuf and c_end[i - nbuf] > prev_load_end):
                return TIE, 0.0, 0.0
            write_first = w <= i - nbuf
        if write_first:
            start = max(c_end[w], port_free)
            port_free = start + writes[w]
            dram_busy += writes[w]
            last = max(last, port_free)
            w += 1
        else:
            if loads[i] > 0:
                start = max(load_req, port_free)
                port_free = start + loads[i]
                dram_busy += loads[i]
                load_end[i] = port_free
            else:
                load_end[i] = load_req
            prev_load_end = load_end[i]
            i += 1
    computed, busy = _compute_through(n, computed, busy, load_end, c_end, steps)
    total = max(last, prev_load_end, c_end[n - 1] if n else 0.0)
    return total, busy, dram_busy


try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the Python loop gives the same cycles
    compiled, COMPILED = pipeline, False
else:
    # no fastmath: the compiled loop does the same IEEE operations in the same order
    _compute_through = numba.njit(cache=True, nogil=True)(_compute_through)
    compiled, COMPILED = numba.njit(cache=True, nogil=True)(pipeline), True


def warm() -> None:
    """Compile (or load from Numba's cache) now, e.g. before worker processes fork."""
    compiled(np.zeros(1), np.zeros(1), np.zeros(1), 2, 0.0)
