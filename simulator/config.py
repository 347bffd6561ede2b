"""Hardware configuration of the simulated sparse accelerator.

A frozen dataclass is the single source of truth; presets are TOML files under
``configs/hw/`` and the CLI applies ``--set key=value`` overrides checked against
the dataclass fields.  Field names carry their units.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "HardwareConfig",
    "PRESET_DIR",
    "available_presets",
    "load_hardware",
    "apply_overrides",
    "parse_overrides",
    "read_document",
]

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "hw"
DEFAULT_PRESET = "besa-64x64"

SPLIT_POLICIES = ("proportional", "fixed")
COLUMN_SPLITS = ("auto", "threshold", "all-sparse", "all-dense")
SPARSE_FORMATS = ("csr", "bitmap", "macko")
MAX_PE_DIM = 1 << 16  # PE rows or columns: far beyond any built array, small enough for int64 cycle math
ROW_SCHEDULES = ("round-robin", "balanced")
SPLIT_GRANULARITIES = ("pe", "column")
DENSE_ENGINES = ("lanes", "systolic-os", "systolic-ws")
# ITRS device types of CACTI's SRAM model, from leakiest (fastest) to least leaky.
SRAM_DEVICES = ("itrs-hp", "itrs-lop", "itrs-lstp")
SPARSE_COMPUTES = ("skip", "dense")


@dataclass(frozen=True)
class HardwareConfig:
    """A ViTCoD-style accelerator (arXiv 2210.09573) with a dense and a sparse engine.

    Weight columns denser than the split point run on the dense engine (zeros
    included); the rest run on the sparse engine, which skips zeros but pays for
    index storage/decoding and load imbalance between its PE lanes.
    """

    name: str = "custom"
    freq_mhz: float = 500.0
    pe_rows: int = 64
    pe_cols: int = 64
    # Organisation of the dense engine: independent MAC lanes (every PE busy whatever the
    # shape), or a pe_rows x pe_cols systolic array, output- or weight-stationary, whose cycles
    # per fold are SCALE-Sim v3's (engines.systolic_cycles). A systolic dense engine gets whole
    # PE columns.
    dense_engine: str = "lanes"
    # How PEs are split between the engines: "proportional" to each side's MACs
    # (ViTCoD), or "fixed" with `dense_pe_fraction` of the array on the dense side.
    split_policy: str = "proportional"
    dense_pe_fraction: float = 0.5
    # The unit of that split: single PEs, or whole columns of the array (the dense engine's
    # share rounded down, as the BESA authors' simulator does).
    split_granularity: str = "pe"
    # Which weight columns go to the dense engine: "auto" searches the split that
    # minimises latency; "threshold" sends columns strictly denser than dense_column_threshold.
    column_split: str = "auto"
    dense_column_threshold: float = 0.75
    # Sparse-engine cycles per nonzero MAC (>= 1): index decode throughput.
    sparse_cycles_per_nnz: float = 1.0
    # Lanes of the sparse engine (0: one per PE row). Each lane takes whole weight rows and
    # owns sparse_pes / lanes PEs; the op lasts as long as its most-loaded lane.
    sparse_lanes: int = 0
    # Row-to-lane assignment: "round-robin" (row r to lane r mod lanes) or "balanced"
    # (a compiler's static schedule: longest rows first onto the least-loaded lane).
    row_schedule: str = "round-robin"
    # Vector unit (RMSNorm, softmax, SiLU x up, RoPE, residual adds): element operations per cycle.
    vector_lanes: int = 64
    weight_sram_kib: float = 53.0
    index_sram_kib: float = 20.0
    act_sram_kib: float = 53.0
    out_sram_kib: float = 108.0
    dram_gbps: float = 76.8
    # Fraction of dram_gbps that streaming actually achieves (a GPU's GEMV reaches ~90%, not 100%).
    dram_efficiency: float = 1.0
    # Fixed time every op costs besides its data and its MACs: on a GPU each op is a kernel, whose
    # launch, ramp-up and drain the next one waits for. 0: a controller streams op into op.
    op_overhead_us: float = 0.0
    weight_bits: int = 8
    act_bits: int = 8
    index_bits: int = 16
    kv_bits: int = 0  # KV-cache precision (0: act_bits)
    sparse_format: str = "csr"
    # How the sparse engine computes: "skip" (one MAC per nonzero, a zero-skipping engine) or "dense"
    # (load as sparse, compute as dense: the weights stream compressed and are expanded on chip for
    # dense MACs, as GPU kernels for unstructured sparsity do (Flash-LLM, arXiv 2309.10285; SpInfer);
    # an N:M mask runs at N/M of the dense MACs, as 2:4 does on sparse tensor cores).
    sparse_compute: str = "skip"
    double_buffer: bool = True
    # Energy (simulator/energy.py): 0 = derived from the operand widths (MAC), from each
    # buffer's size (SRAM) and from the leakage of the MACs and buffers (static: Aladdin's
    # arithmetic, CACTI's SRAM of the `sram_device` type; no clock tree).
    mac_pj: float = 0.0
    sram_pj_per_byte: float = 0.0
    dram_pj_per_byte: float = 160.0
    static_mw: float = 0.0
    sram_device: str = "itrs-lstp"  # Accelergy's CACTI default; itrs-lop / itrs-hp leak ~850x / ~19,000x more
    # Area (simulator/area.py, 45 nm): the logic's cell area is multiplied by logic_area_factor for the
    # wiring, clock tree and placement utilisation cell areas leave out (1.0: cell area only);
    # area_mm2 > 0 replaces the model with a published chip area (a GPU's die).
    logic_area_factor: float = 1.0
    area_mm2: float = 0.0

    def __post_init__(self) -> None:
        for f in ("freq_mhz", "weight_sram_kib", "index_sram_kib", "act_sram_kib",
                  "out_sram_kib", "dram_gbps", "sparse_cycles_per_nnz", "logic_area_factor"):
            value = getattr(self, f)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"hardware: {f} must be a positive number, got {value!r}")
        for f, most in (("pe_rows", MAX_PE_DIM), ("pe_cols", MAX_PE_DIM), ("weight_bits", 64), ("act_bits", 64),
                        ("index_bits", 64), ("vector_lanes", MAX_PE_DIM * MAX_PE_DIM)):
            value = getattr(self, f)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"hardware: {f} must be a positive integer, got {value!r}")
            if value > most:
                raise ValueError(f"hardware: {f} must be at most {most}, got {value!r}")
        for f, most in (("sparse_lanes", MAX_PE_DIM * MAX_PE_DIM), ("kv_bits", 64)):
            value = getattr(self, f)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
                raise ValueError(f"hardware: {f} must be an integer in [0, {most}] (0: default), got {value!r}")
        for kind in ("weight", "index", "act", "out"):
            if self.buffer_bytes(kind) < 1:
                halves = " (half of it per buffer with double_buffer)" if kind in ("weight", "index") else ""
                raise ValueError(f"hardware: {kind}_sram_kib = {getattr(self, f'{kind}_sram_kib')!r} is smaller "
                                 f"than one byte{halves}")
        for f in ("mac_pj", "sram_pj_per_byte", "dram_pj_per_byte", "static_mw", "op_overhead_us", "area_mm2"):
            value = getattr(self, f)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"hardware: {f} must be a finite number >= 0, got {value!r}")
        for f in ("dense_pe_fraction", "dense_column_threshold"):
            if not math.isfinite(getattr(self, f)):
                raise ValueError(f"hardware: {f} must be a finite number, got {getattr(self, f)!r}")
        _check_choice("split_policy", self.split_policy, SPLIT_POLICIES)
        _check_choice("column_split", self.column_split, COLUMN_SPLITS)
        _check_choice("sparse_format", self.sparse_format, SPARSE_FORMATS)
        _check_choice("row_schedule", self.row_schedule, ROW_SCHEDULES)
        _check_choice("split_granularity", self.split_granularity, SPLIT_GRANULARITIES)
        _check_choice("dense_engine", self.dense_engine, DENSE_ENGINES)
        _check_choice("sram_device", self.sram_device, SRAM_DEVICES)
        _check_choice("sparse_compute", self.sparse_compute, SPARSE_COMPUTES)
        if not (isinstance(self.dram_efficiency, (int, float)) and 0.0 < self.dram_efficiency <= 1.0):
            raise ValueError(f"hardware: dram_efficiency must be in (0, 1], got {self.dram_efficiency!r}")
        if not 0.0 < self.dense_pe_fraction < 1.0:
            raise ValueError(f"hardware: dense_pe_fraction must be in (0, 1), got {self.dense_pe_fraction}")
        if not 0.0 <= self.dense_column_threshold <= 1.0:
            raise ValueError(
                f"hardware: dense_column_threshold must be in [0, 1], got {self.dense_column_threshold}")
        if self.sparse_cycles_per_nnz < 1.0:
            raise ValueError("hardware: sparse_cycles_per_nnz must be >= 1 (one MAC per PE per cycle)")

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def lanes(self) -> int:
        """Lanes of the sparse engine (a property of the PE array, never of a tile)."""
        return self.sparse_lanes or self.pe_rows

    @property
    def kv_bytes(self) -> float:
        return (self.kv_bits or self.act_bits) / 8

    @property
    def dram_bytes_per_cycle(self) -> float:
        """Achieved GB/s divided by MHz: bytes the DRAM channel moves per clock cycle."""
        return self.dram_gbps * self.dram_efficiency * 1e9 / (self.freq_mhz * 1e6)

    def buffer_bytes(self, kind: str) -> int:
        """Usable bytes of one SRAM buffer ("weight", "index", "act", "out") for one tile.

        With double buffering, half of the weight and index buffers is being filled
        while the engines read the other half.
        """
        kib = getattr(self, f"{kind}_sram_kib")
        halves = 2 if self.double_buffer and kind in ("weight", "index") else 1
        return int(kib * 1024) // halves

    @property
    def op_overhead_cycles(self) -> float:
        return self.op_overhead_us * self.freq_mhz

    def cycles_to_us(self, cycles: float) -> float:
        return cycles / self.freq_mhz


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"hardware: {field} must be one of {', '.join(choices)}; got {value!r}")


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def read_document(path: str | Path, what: str, fmt: str | None = None) -> Any:
    """Parse a TOML or JSON file (``fmt``, else by suffix: .toml is TOML, anything else JSON);
    errors name the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    fmt = fmt or ("toml" if path.suffix == ".toml" else "json")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not a UTF-8 text {fmt.upper()} file") from None
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{what} {path}: invalid TOML ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path}: invalid JSON ({exc})") from None


def load_hardware(spec: str | Path | None = None, overrides: dict[str, Any] | None = None) -> HardwareConfig:
    """Load a preset by name (``besa-64x64``) or from a TOML path, then apply overrides."""
    spec = DEFAULT_PRESET if spec is None else spec
    path = Path(spec)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{spec}.toml"
        if not path.is_file():
            raise ValueError(
                f"unknown hardware preset {str(spec)!r}; choose one of {', '.join(available_presets())} "
                "or give a path to a .toml file")
    data = read_document(path, "hardware file")
    values = data.get("hardware", data)  # a flat table or everything under [hardware]
    if not isinstance(values, dict):
        raise ValueError(f"hardware file {path}: 'hardware' must be a [hardware] table of key = value")
    tables = [k for k, v in values.items() if isinstance(v, dict)]
    if tables:
        raise ValueError(f"hardware file {path}: unknown table [{tables[0]}]; hardware fields go in a [hardware] "
                         "table (or at the top level)")
    values = dict(values)
    values.setdefault("name", path.stem)
    base = apply_overrides(HardwareConfig(), values)
    return apply_overrides(base, overrides or {})


def apply_overrides(base: HardwareConfig, values: dict[str, Any]) -> HardwareConfig:
    """Return ``base`` with fields replaced; unknown keys and wrong types raise ValueError.

    One type rule for files and the command line: a value is read as TOML reads it, so text from
    ``--set`` is parsed as the TOML literal it spells (``32`` an integer, ``32.0`` a float, ``true`` a
    boolean, anything else a string), then checked like a file's value: an integer field takes an
    integer, a float field an integer or a float, a boolean field a boolean.
    """
    fields = {f.name: f for f in dataclasses.fields(HardwareConfig)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        key = key.removeprefix("hardware.")
        if key not in fields:
            raise ValueError(f"unknown hardware key {key!r}; valid keys: {', '.join(fields)}")
        clean[key] = _coerce(key, value, type(getattr(base, key)))
    return dataclasses.replace(base, **clean)


def parse_value(text: str) -> Any:
    """A ``--set`` value as the TOML literal it spells; text that is no literal stays a string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not type(value):
        raise ValueError(f"hardware: {key} expects {kind.__name__}, got {value!r}")
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` from the command line, each value as the TOML literal it spells."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out
