"""Frozen configuration of a pruning run (single source of truth; validated on construction)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Mapping

METHODS = ("magnitude", "wanda", "sparsegpt", "besa", "search")
QUANTIZERS = ("rtn", "lwc", "obs")
LWC_STAGES = ("joint", "after", "refine")
WBITS = (2, 3, 4, 8)
IMPORTANCE = ("wanda", "magnitude", "sparsegpt")
CALIB_PARTS = ("auto", "all", "first")  # see pruning.calibration
EVAL_PARTS = ("auto", "all", "held-out")
MAX_NSAMPLES = 1 << 16  # calibration segments: far beyond the 128 of the papers
MAX_SEED = 2**63  # torch generators take seeds below 2**64; headroom for per-block offsets


def _is_a(value: object, kind: type) -> bool:
    """isinstance for config fields: an int passes for a float, a bool never passes for a number."""
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def check_field_types(obj: object) -> None:
    """ValueError naming the first field of dataclass ``obj`` whose value does not match its annotation
    (int, float, bool or str, optionally ``| None``); floats must be finite. Other annotations are left
    to the class's own checks."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        simple = [k for k in kinds if k in (int, float, bool, str)]
        if not simple or (value is None and type(None) in kinds):
            continue
        if not any(_is_a(value, k) for k in simple):
            raise ValueError(f"{f.name} expects {' or '.join(k.__name__ for k in simple)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")


def parse_nm(text: str | None) -> tuple[int, int] | None:
    """Parse an ``N:M`` pattern such as ``2:4`` (keep N of every M); None passes through."""
    if text is None:
        return None
    try:
        n, m = (int(v) for v in str(text).split(":"))
    except ValueError as exc:
        raise ValueError(f"N:M pattern must look like 2:4, got {text!r}") from exc
    if not 0 < n < m:
        raise ValueError(f"N:M pattern needs 0 < N < M, got {text!r}")
    return n, m


@dataclass(frozen=True)
class CalibConfig:
    """Calibration data: ``nsamples`` random segments of ``seqlen`` tokens drawn with ``seed``."""

    source: str = "pydoc"
    nsamples: int = 32
    seqlen: int = 512
    seed: int = 0
    part: str = "auto"  # of a single text: all | first (75%) | auto (see pruning.calibration)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.part not in CALIB_PARTS:
            raise ValueError(f"calibration part must be one of {', '.join(CALIB_PARTS)}, got {self.part!r}")
        if not 1 <= self.nsamples <= MAX_NSAMPLES:
            raise ValueError(f"nsamples must be in [1, {MAX_NSAMPLES}], got {self.nsamples}")
        if self.seqlen < 2:
            raise ValueError(f"seqlen must be >= 2, got {self.seqlen}")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")


@dataclass(frozen=True)
class PruneConfig:
    """Everything that decides which weights a run prunes.

    ``sparsity`` is the uniform target (ignored for layers listed in ``profile``); ``nm`` = (n, m)
    keeps n of every m weights. BESA fields are prefixed ``besa_``; ``besa_reconstruct`` runs
    SparseGPT's OBS update on the kept weights after the allocation is learned.

    ``wbits`` (None = no quantization) quantizes every pruned Linear to ``wbits``-bit integer codes,
    asymmetric, per group of ``group_size`` inputs (-1 = per output channel), with ``quantizer``:
    ``rtn`` (min-max), ``lwc`` (learnable clipping; joint with the allocation for BESA) or ``obs``
    (GPTQ-style inside SparseGPT's OBS loop). None picks lwc for besa, obs for sparsegpt, rtn otherwise.
    """

    method: str = "wanda"
    sparsity: float = 0.5
    nm: tuple[int, int] | None = None
    profile: Mapping[str, float] | None = field(default=None, compare=False)
    seed: int = 0
    forward_batch: int = 8
    sparsegpt_blocksize: int = 128
    sparsegpt_percdamp: float = 0.01
    besa_allocation: str = "row"
    besa_importance: str = "wanda"
    besa_epochs: int = 1
    besa_step: float = 0.01
    besa_beta: float = 5.0
    besa_batch: int = 1
    besa_samples: int | None = 24  # the README's headline setting (bench/prune_quality.py); None = all
    besa_carry_d: bool | None = None  # None: carry Prodigy's d across blocks for row allocation only
    besa_optimizer: str = "prodigy"
    besa_lr: float = 1.0
    besa_d_coef: float = 5.0
    besa_smoothing: str = "none"
    besa_init_width: float = 0.1
    besa_reconstruct: bool = False
    besa_target: str = "dense"
    besa_reconstruct_mode: str = "mask"
    besa_max_sparsity: float = 1.0  # largest candidate sparsity of a row or layer (1.0: the authors' grid)
    wbits: int | None = None
    group_size: int = 64
    quantizer: str | None = None
    lwc_lr: float = 0.05
    lwc_search: bool = True
    # BESA + lwc: "joint" (clipping trains with the allocation: the paper's framework), "after"
    # (BESA's mask first, then the clipping alone on it) or "refine" (joint, then the clipping
    # trains alone on the final hard mask, starting from the joint result)
    lwc_stage: str = "joint"
    # BESA with a hardware target (pruning.hw_target.LatencyModel): a latency penalty from a simulator
    # latency table replaces the sparsity penalty; `sparsity` is then not a target.
    hw_target: object | None = None
    # OWL (pruning.owl): per-block sparsity from outlier ratios; owl_m None = uniform allocation
    owl_m: float | None = None
    owl_lambda: float = 0.08
    besa_gate_lr: float = 0.25  # BESA with a hardware target: step of the 2:4 format gates (pruning.hw_target)
    besa_nm_gates: bool = True  # BESA with a hardware target: learn 2:4 per Linear where the preset gains from it
    # calibration segments the errors of search candidates and of BESA's roundings use (one: four made
    # hardware-targeted BESA take 1.53x plain BESA's time instead of 1.24x; bench/codesign_time.py)
    search_samples: int = 1
    search_step: float = 0.1  # method search: candidate sparsities every search_step (of the latency table's grid)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_field_types(self)
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.nm is not None:
            if not (isinstance(self.nm, (tuple, list)) and len(self.nm) == 2
                    and all(_is_a(v, int) for v in self.nm)):
                raise ValueError(f"N:M pattern must be a pair of integers like 2:4, got {self.nm!r}")
            object.__setattr__(self, "nm", tuple(self.nm))
            n, m = self.nm
            if not 0 < n < m:
                raise ValueError(f"N:M pattern needs 0 < N < M, got {n}:{m}")
            if abs(self.sparsity - (1 - n / m)) > 1e-9:
                raise ValueError(f"N:M {n}:{m} implies sparsity {1 - n / m:g}, but sparsity is {self.sparsity:g}")
            if self.method == "besa" or self.profile is not None:
                raise ValueError("an N:M pattern cannot be combined with besa or a sparsity profile")
        if self.profile is not None and self.method == "besa":
            raise ValueError("--profile applies to magnitude, wanda and sparsegpt (BESA learns its own)")
        self._check_besa()
        self._check_quant()
        if self.hw_target is not None and self.method not in ("besa", "search"):
            raise ValueError(f"a hardware target (--target-speedup) applies to besa and search, not to {self.method}")
        if (self.hw_target is not None and self.method == "besa" and self.besa_nm_gates and self.quant_method == "lwc"
                and self.lwc_stage != "after" and any(map(self.hw_target.gains_nm, self.hw_target.dense))):
            raise ValueError(f"{self.hw_target.hardware or 'this preset'} gains from 2:4, and BESA's 2:4 gates do not "
                             "train with joint LWC: use --set lwc_stage=after or --set besa_nm_gates=false")
        if self.besa_gate_lr <= 0:
            raise ValueError(f"besa_gate_lr must be > 0, got {self.besa_gate_lr}")
        if self.method == "search" and self.hw_target is None:
            raise ValueError("method search allocates under a latency budget: give --target-speedup")
        if self.owl_m is not None and (self.method not in ("magnitude", "wanda", "sparsegpt") or self.nm
                                       or self.profile is not None):
            raise ValueError("OWL allocates the sparsity of wanda, sparsegpt or magnitude (no N:M, no --profile)")
        if self.owl_m is not None and not (self.owl_m > 0 and 0 <= self.owl_lambda < 0.5):
            raise ValueError(f"OWL needs owl_m > 0 and owl_lambda in [0, 0.5), got {self.owl_m}, {self.owl_lambda}")
        if self.search_samples < 1:
            raise ValueError(f"search_samples must be >= 1, got {self.search_samples}")
        if not 0.0 < self.search_step <= 0.5:
            raise ValueError(f"search_step must be in (0, 0.5], got {self.search_step}")

    def _check_quant(self) -> None:
        self._check_lwc_stage()
        if self.wbits is None:
            if self.quantizer is not None:
                raise ValueError(f"quantizer {self.quantizer!r} needs a bit width (--wbits {'|'.join(map(str, WBITS))})")
            return
        if self.wbits not in WBITS:
            raise ValueError(f"wbits must be one of {', '.join(map(str, WBITS))}, got {self.wbits}")
        if self.group_size != -1 and self.group_size < 1:
            raise ValueError(f"group_size must be >= 1 or -1 (per output channel), got {self.group_size}")
        if self.quantizer is not None and self.quantizer not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {self.quantizer!r}; choose one of {', '.join(QUANTIZERS)}")
        if self.lwc_lr <= 0:
            raise ValueError(f"lwc_lr must be > 0, got {self.lwc_lr}")

    def _check_lwc_stage(self) -> None:
        if self.lwc_stage not in LWC_STAGES:
            raise ValueError(f"lwc_stage must be one of {', '.join(LWC_STAGES)}, got {self.lwc_stage!r}")
        if self.lwc_stage != "joint" and not (self.method == "besa" and self.quant_method == "lwc"
                                               and not self.besa_reconstruct):
            raise ValueError(f"lwc_stage={self.lwc_stage} applies to --method besa with --wbits and the lwc "
                             "quantizer, without --reconstruct")

    @property
    def quant_method(self) -> str | None:
        """The quantizer in force: None without ``wbits``; the method's default when ``quantizer`` is None."""
        if self.wbits is None:
            return None
        return self.quantizer or {"besa": "lwc", "sparsegpt": "obs"}.get(self.method, "rtn")

    def _check_besa(self) -> None:
        if self.besa_allocation not in ("row", "layer"):
            raise ValueError(f"allocation must be row or layer, got {self.besa_allocation!r}")
        if self.besa_importance not in IMPORTANCE:
            raise ValueError(f"BESA importance must be one of {', '.join(IMPORTANCE)}")
        if self.besa_optimizer not in ("prodigy", "adamw"):
            raise ValueError(f"optimizer must be prodigy or adamw, got {self.besa_optimizer!r}")
        if self.besa_smoothing not in ("none", "sigmoid"):
            raise ValueError(f"smoothing must be none or sigmoid, got {self.besa_smoothing!r}")
        if self.besa_target not in ("block", "dense"):
            raise ValueError(f"BESA target must be block or dense, got {self.besa_target!r}")
        if self.besa_reconstruct_mode not in ("counts", "mask"):
            raise ValueError(f"reconstruct mode must be counts or mask, got {self.besa_reconstruct_mode!r}")
        if not self.sparsity <= self.besa_max_sparsity <= 1.0:
            raise ValueError(f"besa_max_sparsity must be in [sparsity, 1], got {self.besa_max_sparsity}")
        if not 0.0 < self.besa_step <= 0.5:
            raise ValueError(f"besa_step (candidate sparsity step) must be in (0, 0.5], got {self.besa_step}")
        if self.besa_samples is not None and self.besa_samples < 1:
            raise ValueError(f"besa_samples must be >= 1, got {self.besa_samples}")
        for name, low, strict in (("besa_epochs", 0, False), ("besa_batch", 1, False), ("forward_batch", 1, False),
                                  ("sparsegpt_blocksize", 1, False), ("sparsegpt_percdamp", 0, False),
                                  ("besa_beta", 0, False), ("besa_lr", 0, True), ("besa_d_coef", 0, True),
                                  ("besa_init_width", 0, True)):
            value = getattr(self, name)
            if value < low or (strict and value == low):
                raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value}")

    def hyperparameters(self) -> dict:
        """The settings relevant to ``method`` (for the manifest)."""
        out = {"sparsity": self.sparsity, "nm": None if self.nm is None else f"{self.nm[0]}:{self.nm[1]}",
               "profile": None if self.profile is None else "per-layer", "seed": self.seed}
        if self.method == "sparsegpt" or (self.method == "besa" and self.besa_reconstruct):
            out.update(blocksize=self.sparsegpt_blocksize, percdamp=self.sparsegpt_percdamp)
        if self.method == "besa":
            hw_only = ("besa_gate_lr", "besa_nm_gates")  # settings of a hardware target's 2:4 gates
            out.update({k[5:]: v for k, v in self.__dict__.items()
                        if k.startswith("besa_") and (self.hw_target is not None or k not in hw_only)})
        if self.method == "search":
            out.update(search_samples=self.search_samples, search_step=self.search_step)
        elif self.method == "besa" and self.hw_target is not None:
            out.update(search_samples=self.search_samples)  # segments its rounding's options are measured on
        if self.owl_m is not None:
            out.update(allocation="owl", owl_m=self.owl_m, owl_lambda=self.owl_lambda)
        if self.hw_target is not None:
            out["hw_target"] = self.hw_target.summary()
        if self.wbits is not None:
            out.update(wbits=self.wbits, group_size=self.group_size, quantizer=self.quant_method)
            if self.quant_method == "lwc":
                out.update(lwc_lr=self.lwc_lr, lwc_search=self.lwc_search)
                if self.method == "besa":
                    out.update(lwc_stage=self.lwc_stage)
        out["weights_updated"] = self.updates_weights
        return out

    @property
    def needs_data(self) -> bool:
        """A calibration pass: every method but magnitude."""
        return self.method != "magnitude"

    @property
    def needs_hessian(self) -> bool:
        """X^T X: SparseGPT, BESA reconstruction, the sparsegpt importance score and the obs quantizer."""
        return self.method == "sparsegpt" or self.quant_method == "obs" or (self.method == "besa" and (
            self.besa_reconstruct or self.besa_importance == "sparsegpt"))

    @property
    def needs_targets(self) -> bool:
        """The dense block's outputs as reconstruction targets: BESA, the search and LWC."""
        return self.method in ("besa", "search") or self.quant_method == "lwc"

    @property
    def updates_weights(self) -> bool:
        """True when kept weights change (SparseGPT's update), so masks alone do not reproduce the model."""
        return (self.method == "sparsegpt" or (self.method == "besa" and self.besa_reconstruct)
                or self.wbits is not None)
