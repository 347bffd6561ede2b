"""SRAM energy and leakage: our tables next to CACTI 7 (the model Accelergy uses for SRAMs).

CACTI (github.com/HewlettPackard/cacti, version 7.0) is a C++ program: `make cacti` clones
and builds it into `.cacti/` (needs git, g++ and network access); or point `--cacti` at a
built copy (the folder holding the `cacti` binary and its sample `cache.cfg`). This script
installs nothing: with a binary it runs one CACTI query per (device, size); `--cached`
reads bench/cacti_results.json instead (`--save` rewrites it); with neither it prints our
side only and says how to get the reference.

Each query is CACTI's own sample `cache.cfg` with these keys changed: a scratch RAM
(`cache type "ram"`, no tags) of the given size, one read-write port, one bank, 8-byte
(64-bit) words and bus, direct mapped, 45 nm, and the choices Accelergy's CACTI plug-in
makes by default (accelergy-cacti-plug-in, default_cfg.cfg): one ITRS device type for cells
and periphery, 300 K, "fast" access mode, energy-delay^2 optimisation.

Printed per (device, size): CACTI's dynamic read energy per 64-bit access next to the
Horowitz figure the simulator charges (simulator/energy.py: 10 / 20 / 100 pJ at 8 KB /
32 KB / 1 MB, log-log), and CACTI's standby leakage (subthreshold + gate, mW per bank)
next to the table the simulator's static power uses (simulator.energy.SRAM_LEAK_MW); and, for
simulator/area.py, CACTI's data-array area of buffers with one read and one write port (a buffer is
filled while the engines read it) of 64 to 8192 bits, next to the simulator's area table
(simulator.area.SRAM_AREA_MM2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from simulator import load_hardware
from simulator.config import SRAM_DEVICES
from simulator.area import SRAM_AREA_KIB, SRAM_AREA_PORT_BITS, max_port_bits, sram_area_mm2
from simulator.energy import SRAM_LEAK_KIB, SRAM_LEAK_MW, sram_leak_mw, sram_pj_per_byte

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "cacti_results.json"
DEFAULT_DIR = ROOT / ".cacti"
CHANGED_KEYS = {
    "-block size (bytes)": "8",
    "-associativity": "1",
    "-read-write port": "1",
    "-exclusive read port": "0",
    "-exclusive write port": "0",
    "-UCA bank count": "1",
    "-technology (u)": "0.045",
    "-output/input bus width": "64",
    "-operating temperature (K)": "300",
    "-cache type": '"ram"',
    "-access mode (normal, sequential, fast) -": '"fast"',
    "-Optimize ED or ED^2 (ED, ED^2, NONE):": '"ED^2"',
}
DEVICE_KEYS = ("-Data array cell type -", "-Data array peripheral type -",
               "-Tag array cell type -", "-Tag array peripheral type -")
OUTPUTS = {
    "read_nj": r"Total dynamic read energy per access \(nJ\):\s*([0-9.eE+-]+)",
    "leak_mw": r"Total leakage power of a bank \(mW\):\s*([0-9.eE+-]+)",
    "gate_mw": r"Total gate leakage power of a bank \(mW\):\s*([0-9.eE+-]+)",
    "cycle_ns": r"Cycle time \(ns\):\s*([0-9.eE+-]+)",
}
AREA_OUTPUT = r"Data array: Area \(mm2\):\s*([0-9.eE+-]+)"


def area_keys(port_bits: int) -> dict[str, str]:
    """The area table's organisation: one read and one write port (a buffer is filled while the engines
    read it), ``port_bits`` wide, one word per access."""
    return {"-read-write port": "0", "-exclusive read port": "1", "-exclusive write port": "1",
            "-block size (bytes)": str(port_bits // 8), "-output/input bus width": str(port_bits)}


def query_text(template: str, device: str, kib: int, extra: dict[str, str] | None = None) -> str:
    """CACTI's sample config with our keys set (each key must be there once); ``extra`` overrides them."""
    values = {"-size (bytes)": str(kib * 1024), **CHANGED_KEYS, **{k: f'"{device}"' for k in DEVICE_KEYS},
              **(extra or {})}
    for key, value in values.items():
        pattern = re.compile(r"^" + re.escape(key) + r"(?=\s).*$", re.M)
        template, count = pattern.subn(lambda _: f"{key} {value}", template, count=1)
        if count != 1:
            raise SystemExit(f"validate_cacti: CACTI's cache.cfg has no line starting with {key!r}")
    return template


def cacti_output(folder: Path, text: str):
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write(text)
    try:
        out = subprocess.run([str(folder / "cacti"), "-infile", f.name], cwd=folder, capture_output=True,
                             text=True, timeout=300)
    finally:
        os.unlink(f.name)
    return out


def run_cacti(folder: Path, device: str, kib: int) -> dict:
    out = cacti_output(folder, query_text((folder / "cache.cfg").read_text(), device, kib))
    row = {"device": device, "kib": kib}
    for key, pattern in OUTPUTS.items():
        found = re.search(pattern, out.stdout)
        if found is None:
            raise SystemExit(f"validate_cacti: CACTI gave no {key} for {device} {kib} KiB "
                             f"(exit {out.returncode}): {out.stderr.strip()[-300:]}")
        row[key] = float(found.group(1))
    return row


def run_cacti_area(folder: Path, device: str, kib: int, port_bits: int) -> dict:
    """CACTI's data-array area (mm2) of a ``kib`` KiB buffer with the area table's organisation."""
    out = cacti_output(folder, query_text((folder / "cache.cfg").read_text(), device, kib, area_keys(port_bits)))
    found = re.search(AREA_OUTPUT, out.stdout)
    if found is None:
        raise SystemExit(f"validate_cacti: CACTI gave no area for {device} {kib} KiB, {port_bits}-bit port "
                         f"(exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return {"device": device, "kib": kib, "port_bits": port_bits, "area_mm2": float(found.group(1))}


def reference_runs(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """(energy/leakage runs, area runs): CACTI's answers, fresh or from the saved file."""
    if args.cached:
        data = json.loads(CACHE.read_text())
        print(f"CACTI numbers read from {CACHE.relative_to(ROOT)} (cached, not rerun; {data['cacti']}).")
        return data["runs"], data.get("area_runs", [])
    folder = Path(args.cacti) if args.cacti else DEFAULT_DIR
    if not (folder / "cacti").is_file() or not (folder / "cache.cfg").is_file():
        print(f"No CACTI build in {folder}: `make cacti` builds one (git, g++, network), or give "
              "--cacti DIR; --cached reads the saved reference. Our side only:")
        return [], []
    runs, area_runs = [], []
    for device in SRAM_DEVICES:
        for kib in SRAM_LEAK_KIB:
            runs.append(run_cacti(folder, device, kib))
            print(f"  CACTI {device} {kib} KiB done", file=sys.stderr)
        for kib in SRAM_AREA_KIB:
            for bits in (b for b in SRAM_AREA_PORT_BITS if b <= max_port_bits(kib)):
                area_runs.append(run_cacti_area(folder, device, kib, bits))
                print(f"  CACTI area {device} {kib} KiB {bits}-bit done", file=sys.stderr)
    if args.save:
        head = {"cacti": "CACTI 7.0 (HewlettPackard/cacti 1ffd8df), 45 nm, 300 K, scratch RAM, 64-bit port, "
                         "1 bank, ED^2",
                "area": "the same, with one read and one write port of each width (block = the port)",
                "runs": runs, "area_runs": area_runs}
        CACHE.write_text(json.dumps(head, indent=1) + "\n")
        print(f"Saved {len(runs)} + {len(area_runs)} runs to {CACHE.relative_to(ROOT)}.")
    return runs, area_runs


def rel(a: float, b: float) -> str:
    return f"{(a - b) / b * 100:+.1f}%"


def print_tables(runs: list[dict]) -> int:
    hw = load_hardware("besa-64x64")
    by_key = {(r["device"], r["kib"]): r for r in runs}
    worst = 0.0
    print("\nSRAM, 45 nm, one 64-bit access and standby leakage per bank")
    print("| device | KiB | read pJ CACTI | read pJ ours (Horowitz) | gap | leakage mW CACTI | leakage mW ours "
          "| gap | CACTI cycle ns |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for device in SRAM_DEVICES:
        for kib in SRAM_LEAK_KIB:
            our_read = sram_pj_per_byte(hw, kib) * 8
            our_leak = sram_leak_mw(device, kib)
            ref = by_key.get((device, kib))
            if ref is None:
                print(f"| {device} | {kib} | - | {our_read:.1f} | - | - | {our_leak:.4g} | - | - |")
                continue
            read, leak = ref["read_nj"] * 1e3, ref["leak_mw"] + ref["gate_mw"]
            worst = max(worst, abs(our_leak - leak) / leak)
            print(f"| {device} | {kib} | {read:.1f} | {our_read:.1f} | {rel(our_read, read)} | {leak:.4g} | "
                  f"{our_leak:.4g} | {rel(our_leak, leak)} | {ref['cycle_ns']:.2f} |")
    if runs:
        print(f"\nLeakage table vs CACTI: largest gap {worst * 100:.2f}% (the table keeps 3 significant digits).")
    return 0 if worst <= 0.006 else 1  # 3 significant digits round by up to 0.5%


def print_area(area_runs: list[dict]) -> int:
    """CACTI's area next to the simulator's table (simulator.area.SRAM_AREA_MM2) at every saved point."""
    if not area_runs:
        return 0
    worst = 0.0
    print("\nSRAM area, 45 nm, one read + one write port of the given width (mm2)")
    print("| device | KiB | port bits | CACTI | ours | gap |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in area_runs:
        ours = sram_area_mm2(r["device"], r["kib"], r["port_bits"])
        worst = max(worst, abs(ours - r["area_mm2"]) / r["area_mm2"])
        print(f"| {r['device']} | {r['kib']} | {r['port_bits']} | {r['area_mm2']:.4g} | {ours:.4g} | "
              f"{rel(ours, r['area_mm2'])} |")
    print(f"\nArea table vs CACTI: largest gap {worst * 100:.2f}% (3 significant digits).")
    return 0 if worst <= 0.006 else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cacti", help=f"folder with a built CACTI (default {DEFAULT_DIR.relative_to(ROOT)})")
    ap.add_argument("--cached", action="store_true", help=f"read {CACHE.name} instead of running CACTI")
    ap.add_argument("--save", action="store_true", help=f"write the fresh CACTI runs to {CACHE.name}")
    args = ap.parse_args(argv)
    if set(SRAM_LEAK_MW) != set(SRAM_DEVICES):
        raise SystemExit("validate_cacti: simulator.energy.SRAM_LEAK_MW does not cover every SRAM device")
    runs, area_runs = reference_runs(args)
    return print_tables(runs) | print_area(area_runs)


if __name__ == "__main__":
    sys.exit(main())
