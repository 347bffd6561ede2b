"""Run SCALE-Sim v3 on one GEMM and print its cycles and DRAM traffic as JSON.

Runs inside the side venv `.venv-scalesim` (scalesim==3.0.0 pins numpy<2), never in
the main one; `bench/validate_scalesim.py` calls it as a subprocess, one run per call.

    .venv-scalesim/bin/python bench/scalesim_ref.py M K N --dataflow os \
        [--rows 64 --cols 64 --ifmap-kib 53 --filter-kib 53 --ofmap-kib 108]

Our Linear (out N, in K) on M tokens is the GEMM (M x K) @ (K x N). SCALE-Sim's GEMM
topology row is ``name, M, N, K,`` (topology_utils.py:load_arrays_gemm turns it into a
conv layer with ifmap M x K, a 1 x K filter and N filters), so ifmap = activations
(M x K), filter = weights (K x N), ofmap = outputs (M x N). Words are 1 byte
(single_layer_sim.py:run, ``word_size = 1``), so word counts are bytes.

The config uses ``InterfaceBandwidth: CALC`` (the mode of SCALE-Sim's own
configs/scale.cfg): reads never stall, and DRAM traffic is counted by
read_buffer_estimate_bw.py. USER mode (read_buffer.py) is not used: it replays the
operand's prefetch order as a ring, so a block demanded again costs a wrap through the
whole operand, and it counts whole request lines (32x128x128 OS on 8x8 with 4 kB SRAMs:
820,000 filter words for a 16,384-word filter, and 74,010 stall cycles). The printed
numbers come from SCALE-Sim's own COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ifmap_kib}
FilterSramSzkB: {filter_kib}
OfmapSramSzkB: {ofmap_kib}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def _report(path: Path) -> dict[str, str]:
    """First data row of a SCALE-Sim report CSV, keyed by its (stripped) header."""
    with path.open() as fh:
        rows = [[c.strip() for c in row] for row in csv.reader(fh)]
    return dict(zip(rows[0], rows[1]))


def run(m: int, k: int, n: int, dataflow: str, rows: int, cols: int,
        ifmap_kib: int, filter_kib: int, ofmap_kib: int) -> dict:
    from scalesim.scale_sim import scalesim  # the side venv only

    params = dict(rows=rows, cols=cols, ifmap_kib=ifmap_kib, filter_kib=filter_kib,
                  ofmap_kib=ofmap_kib, dataflow=dataflow)
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "scale.cfg").write_text(CONFIG.format(name="run", **params))
        (tmp_path / "gemm.csv").write_text(f"Layer, M, N, K,\nlinear, {m}, {n}, {k},\n")
        (tmp_path / "layout.csv").write_text("Layer,\n")  # required file; unused without custom layouts
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
            sim = scalesim(save_disk_space=True, verbose=False, config=str(tmp_path / "scale.cfg"),
                           topology=str(tmp_path / "gemm.csv"), layout=str(tmp_path / "layout.csv"),
                           input_type_gemm=True)
            sim.run_scale(top_path=str(tmp_path / "out"))
        wall_s = time.perf_counter() - start
        compute = _report(tmp_path / "out" / "run" / "COMPUTE_REPORT.csv")
        detail = _report(tmp_path / "out" / "run" / "DETAILED_ACCESS_REPORT.csv")
    return {
        "M": m, "K": k, "N": n, **params,
        "compute_cycles": int(float(compute["Total Cycles"])),
        "stall_cycles": int(float(compute["Stall Cycles"])),
        "total_cycles_incl_prefetch": int(float(compute["Total Cycles (incl. prefetch)"])),
        "dram_ifmap_reads": int(float(detail["DRAM IFMAP Reads"])),
        "dram_filter_reads": int(float(detail["DRAM Filter Reads"])),
        "dram_ofmap_writes": int(float(detail["DRAM OFMAP Writes"])),
        "sram_ifmap_reads": int(float(detail["SRAM IFMAP Reads"])),
        "sram_filter_reads": int(float(detail["SRAM Filter Reads"])),
        "wall_s": round(wall_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("M", type=int)
    ap.add_argument("K", type=int)
    ap.add_argument("N", type=int)
    ap.add_argument("--dataflow", choices=("os", "ws", "is"), default="os")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--ifmap-kib", type=int, default=53, help="SCALE-Sim takes whole kB (x1024 bytes)")
    ap.add_argument("--filter-kib", type=int, default=53)
    ap.add_argument("--ofmap-kib", type=int, default=108)
    a = ap.parse_args(argv)
    out = run(a.M, a.K, a.N, a.dataflow, a.rows, a.cols, a.ifmap_kib, a.filter_kib, a.ofmap_kib)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
