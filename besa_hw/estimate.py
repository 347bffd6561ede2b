"""Know the cost before you start: peak memory and time of a prune, per component.

The model counts the bytes that :func:`pruning.sequential.prune_model` holds at its peak (see
docs in the README, "Estimating a prune"); no torch is imported. Per block (P weights, the seven
Linears), N calibration segments of T tokens, hidden size H, intermediate size I, d bytes per
element of the compute dtype:

Held throughout a block:

* runtime: the Python process with torch and transformers loaded (measured, ``RUNTIME_GB``) or,
  on a GPU, the CUDA context (``CUDA_CONTEXT_GB``, assumed);
* block weights: P*d (streamed) or the whole model (loaded whole);
* activations: the pruned stream, input and output of a block forward: 2*Ns*T*H*d (BESA with a
  dense target propagates only ``besa_samples`` = Ns of the N segments; otherwise Ns = N);
* dense stream (BESA's target): the dense block's inputs and outputs, 2*N*T*H*d;
* hessians (SparseGPT, OBS quantization, BESA reconstruction): X^T X per distinct input, fp32;
* besa ranks: int16 ranks, 2 bytes per weight;
* optimizer state: Prodigy's six float32 buffers per allocation logit (rows x candidates).

Plus the largest transient of the phases of a block: a forward of ``forward_batch`` segments
(MLP and attention intermediates); scoring (score, argsort and ranks of the largest Linear,
20 bytes per weight); OBS (two Cholesky-sized matrices and the weight copy); BESA training (the
masked weights P*d held by the forward, the weight gradient of the largest Linear and its
product with the weight, and one segment's autograd activations).

Time: forward FLOPs of the block (2*P*T per segment, plus attention's 4*T^2*H) times the number of
forward-equivalent passes of the method (Wanda 2N: the dense pass and the pruned stream; BESA
2N or 3N plus 3 per training segment: forward and backward; SparseGPT 2N plus its OBS loop,
2*out*in^2 FLOPs per Linear at ``OBS_EFFICIENCY``), divided by the device's sustained
throughput. The throughputs are ``DEVICES``' entries: this CPU's measured by
``bench/prune_scale.py``, the GPUs' stated as assumptions (a fraction of the datasheet's bf16 peak).
On a GPU, SparseGPT's OBS loop is timed per weight column instead (kernel launches bound it:
``OBS_COLUMN_S``, measured on an H200) and its Hessians at the GPU's float32 rate; CUDA's fused
attention (16-bit) holds no score matrix. ``bench/RESULTS-gpu.md`` compares all of it with an H200.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

GB = 1e9
RUNTIME_GB = 0.6       # measured peak RSS of `besa-hw prune` on a tiny model (torch 2.13 CPU, transformers 5)
CUDA_CONTEXT_GB = 0.6  # CUDA context and kernels on the device (typical for torch 2.x; an assumption)


@dataclass(frozen=True)
class Device:
    """A compute device: memory in GB (None: this machine's available RAM) and sustained fp32/bf16
    throughput in TFLOP/s for the block forwards. GPUs also give the float32 rate of the Hessian
    accumulation (X^T X, no tensor cores) and the seconds per column of the OBS loop, which on a
    GPU is bound by kernel launches, not FLOPs; on the CPU both are inside ``OBS_EFFICIENCY``."""

    name: str
    memory_gb: float | None
    tflops: float
    note: str
    fp32_tflops: float | None = None
    obs_column_s: float | None = None


#: OBS loop per weight column on a GPU: 5.8 s per LLaMA-7B block (35584 columns) measured on an
#: H200 (bench/gpu_probe.py, SparseGPT's method time), taken for every GPU (launch-bound)
OBS_COLUMN_S = 163e-6
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cpu", None, 0.146, "this machine (2 threads): 0.146 TFLOP/s sustained fp32, measured by "
           "bench/prune_scale.py from Wanda's block forwards on LLaMA-7B shapes"),
    Device("a100-80gb", 80.0, 150.0, "A100 SXM 80 GB: 312 TFLOP/s bf16 peak, 48% sustained (assumed); "
           "fp32 19.5 peak, 50% (assumed)", 9.75, OBS_COLUMN_S),
    Device("a100-40gb", 40.0, 150.0, "A100 40 GB: as a100-80gb", 9.75, OBS_COLUMN_S),
    Device("h100-80gb", 80.0, 400.0, "H100 SXM 80 GB: 989 TFLOP/s bf16 peak, 40% sustained; fp32 67 peak, "
           "50% (assumed; the H200's forwards measured 310-335 TFLOP/s, bench/gpu_probe.py)", 33.5, OBS_COLUMN_S),
    Device("h200-141gb", 141.0, 400.0, "H200 141 GB: as h100-80gb", 33.5, OBS_COLUMN_S),
    Device("rtx4090", 24.0, 80.0, "RTX 4090 24 GB: 165 TFLOP/s bf16 peak, 48% sustained; fp32 82.6 peak, "
           "50% (assumed)", 41.3, OBS_COLUMN_S),
)}
#: SparseGPT's OBS loop (column by column) runs at this fraction of the forward throughput:
#: 0.45 measured on this CPU (bench/prune_scale.py: SparseGPT's time less Wanda's, over its FLOPs).
OBS_EFFICIENCY = 0.45
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PRODIGY_BUFFERS = 6  # param, grad, exp_avg, exp_avg_sq, s, p0 (float32)


@dataclass(frozen=True)
class Estimate:
    """Peak memory per component (bytes) and time (seconds) of one prune."""

    components: dict[str, float]
    seconds_per_block: float
    blocks: int
    device: str
    capacity: float | None  # bytes available on the device (None: unknown)
    notes: tuple[str, ...] = ()

    @property
    def peak(self) -> float:
        return sum(self.components.values())

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.peak <= self.capacity

    def lines(self) -> list[str]:
        out = [f"{name:<20} {value / GB:8.2f} GB" for name, value in self.components.items()]
        out.append(f"{'peak:':<20} {self.peak / GB:8.2f} GB")
        if self.capacity is not None:
            out.append(f"{'available:':<20} {self.capacity / GB:8.2f} GB ({self.device})")
        total = self.seconds_per_block * self.blocks
        out.append(f"time: {self.seconds_per_block:.1f} s per block, {total / 3600:.2f} h for {self.blocks} blocks "
                   f"({self.device})")
        return out + [f"note: {n}" for n in self.notes]


def shape_of(model: str | None = None, shape: str | None = None):
    """The ``ModelShape`` of ``--shape NAME`` or of a model folder's config.json (None when unknown:
    a GGUF file other than the bundled one, a hub id)."""
    from besa_hw.models import DEFAULT_MODEL
    from simulator.workload import SHAPES, ModelShape

    if shape is not None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
        return SHAPES[shape]
    if model == DEFAULT_MODEL:
        return SHAPES["smollm2-135m"]
    config = Path(model or "") / "config.json"
    if config.is_file():
        try:
            return ModelShape.from_dict(Path(model).name, json.loads(config.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{config}: cannot read the model's dimensions ({exc})") from None
    return None


def available_bytes(device: str) -> float | None:
    """Free memory of ``device``: CPU MemAvailable, a CUDA device's free memory, a named device's size."""
    if device in DEVICES and DEVICES[device].memory_gb is not None:
        return DEVICES[device].memory_gb * GB
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


#: substrings of ``torch.cuda.get_device_name`` -> the named device whose throughput ``cuda`` uses
GPU_NAMES = (("H200", "h200-141gb"), ("H100", "h100-80gb"), ("A100", "a100-80gb"), ("4090", "rtx4090"))


def detected_gpu(device: str) -> Device:
    """The named device matching ``device``'s GPU (``cuda[:N]`` on this machine; A100 80 GB's
    throughput when the GPU is not one of ``GPU_NAMES`` or none is visible)."""
    try:
        import torch

        name = torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else ""
    except (RuntimeError, AssertionError, ValueError):
        name = ""
    return next((DEVICES[key] for sub, key in GPU_NAMES if sub in name), DEVICES["a100-80gb"])


def estimate(shape, cfg, calib, *, device: str = "cpu", dtype: str = "float32", streamed: bool = True,
             activations: str = "device", blocks: int | None = None) -> Estimate:
    """Peak memory and time of pruning ``shape`` with ``cfg`` (a PruneConfig) on ``calib`` data.

    Peak = what is held throughout a block (runtime, weights, activations, method and optimizer
    state) + the largest transient of the block's phases (forwards, scoring, OBS, BESA training).
    """
    d = DTYPE_BYTES[dtype]
    ops = shape.op_shapes()
    P = sum(o * i for o, i in ops.values())
    largest = max(o * i for o, i in ops.values())
    H, I, T, N = shape.hidden_size, shape.intermediate_size, calib.seqlen, calib.nsamples
    heads, q = shape.num_attention_heads, shape.num_attention_heads * shape.head_dim
    gpu = not device.startswith("cpu")
    method, besa = cfg.method, cfg.method == "besa"
    dense_target = besa and cfg.besa_target == "dense"
    hessian = cfg.needs_hessian
    ns = min(N, cfg.besa_samples) if dense_target and not hessian and cfg.besa_samples else N
    seg = T * H * d  # one segment's hidden states
    c: dict[str, float] = {"CUDA context": CUDA_CONTEXT_GB * GB} if gpu else {"runtime": RUNTIME_GB * GB}
    embed = shape.vocab_size * H * d
    if streamed:
        c["block weights"] = P * d
    else:
        c["model weights (loaded whole)"] = (P * shape.num_hidden_layers + 2 * embed) * d
    data = cfg.needs_data
    if data:  # a block forward holds its input and output stream
        c["activations"] = 2 * ns * seg
        if dense_target:
            c["dense stream"] = 2 * N * seg
    if hessian:  # X^T X per distinct input (q/k/v, o, gate/up, down), fp32
        c["hessians"] = 4 * (2 * H * H + q * q + I * I)
    if besa:
        c["besa ranks"] = 2 * P  # int16 ranks (candidate buckets are recomputed from them)
        rows = sum(o for o, _ in ops.values()) if cfg.besa_allocation == "row" else len(ops)
        c["optimizer state"] = rows * (round(1 / cfg.besa_step) + 1) * 4 * PRODIGY_BUFFERS
    # transients, one phase at a time
    chunk = min(cfg.forward_batch, N)
    # attention scores: materialised on the CPU; CUDA's fused SDPA kernels (16-bit) hold none
    scores = 0 if gpu and d == 2 else chunk * heads * T * T * d
    # the statistics hook's float32 copy of the widest input (and its square; a 16-bit input adds a copy)
    hook = chunk * T * I * (4 if d == 4 else 8) if data and (gpu or hessian) else 0
    phases = {"forward": chunk * T * (4 * H + 3 * I) * d + scores + hook + (4 * I * I if hessian else 0)}
    if method in ("wanda", "magnitude") or (besa and not hessian):
        phases["scoring"] = (4 + 8 + 8) * largest  # score, argsort, ranks of the largest Linear
    if hessian:
        phases["obs"] = 2 * 4 * I * I + 2 * 4 * largest  # Cholesky steps + the weight copy
    if besa:
        per_sample = cfg.besa_batch * (T * (12 * H + 5 * I) * 4 + (0 if gpu and d == 2 else heads * T * T * 4 * 3))
        # masked weights held by the forward, one Linear's weight gradient and its product with the weight
        phases["besa training"] = d * P + 2 * d * largest + per_sample
    phase = max(phases, key=phases.get)
    c[f"transient ({phase})"] = phases[phase]
    notes = []
    if data and activations == "cpu" and gpu:
        moved = c.pop("activations") + c.pop("dense stream", 0.0)
        notes.append(f"activations in CPU RAM: {moved / GB:.2f} GB of host memory, not counted above")
    if data and streamed and embed > c["block weights"]:
        notes.append(f"the token embedding ({embed / GB:.2f} GB) is held only while block 0's inputs are "
                     "captured, before any block")
    # time: forward-equivalent passes of the block over the calibration segments
    fwd = 2 * P * T + 4 * T * T * H  # FLOPs of one segment through one block
    passes = {"magnitude": 0.0, "wanda": 2.0 * N, "sparsegpt": 2.0 * N}.get(method, 0.0)
    if besa:
        passes = N * (2 + (1 if dense_target else 0)) + 3 * cfg.besa_epochs * ns
    dev = DEVICES.get(device) or (detected_gpu(device) if gpu else DEVICES["cpu"])
    seconds = passes * fwd / (dev.tflops * 1e12)
    if hessian and dev.obs_column_s is None:  # CPU: OBS and Hessians at a measured fraction of the forwards
        seconds += sum(o * i * i for o, i in ops.values()) * 2 / OBS_EFFICIENCY / (dev.tflops * 1e12)
    elif hessian:  # GPU: X^T X of each distinct input in float32 over the N segments, then the OBS loop
        seconds += 2 * N * T * (2 * H * H + q * q + I * I) / (dev.fp32_tflops * 1e12)
        seconds += sum(i for _, i in ops.values()) * dev.obs_column_s
    capacity = available_bytes("cpu") if device == "cpu" else available_bytes(device)
    return Estimate(c, seconds, blocks or shape.num_hidden_layers, device, capacity, tuple(notes))


def check_fits(spec, cfg, calib, *, device: str, dtype: str, activations: str = "auto",
               skip: bool = False) -> str:
    """Run the estimate before a prune: ValueError with a suggestion when it would not fit.

    Returns where the activations should live (``device`` or ``cpu``).
    """
    from pruning.streaming import is_streamable

    where = "device" if activations == "auto" else activations
    if skip:
        return where
    try:
        shape = shape_of(spec.source if spec.gguf_file is None else spec.model_id)
    except ValueError:  # not LLaMA-shaped: the loader names the architecture
        shape = None
    if shape is None:
        logger.info("no memory estimate for %s (dimensions unknown before loading)", spec.model_id)
        return where
    streamed = spec.gguf_file is None and is_streamable(spec.source)
    est = estimate(shape, cfg, calib, device=device, dtype=dtype, streamed=streamed, activations=where)
    if not est.fits and activations == "auto" and device != "cpu":
        alt = estimate(shape, cfg, calib, device=device, dtype=dtype, streamed=streamed, activations="cpu")
        if alt.fits:
            logger.info("activations kept in CPU RAM: the estimate on %s is %.1f GB", device, est.peak / GB)
            return "cpu"
    if not est.fits:
        biggest = max((k for k in est.components if k not in ("runtime", "CUDA context")), key=est.components.get)
        hint = ["fewer --nsamples or a shorter --seqlen"]
        if dtype == "float32":
            hint.append("--dtype bfloat16")
        if device != "cpu" and where != "cpu":
            hint.append("--activations cpu")
        raise ValueError(f"this prune would need about {est.peak / GB:.1f} GB on {device} "
                         f"(largest part: {biggest}, {est.components[biggest] / GB:.1f} GB) but "
                         f"{est.capacity / GB:.1f} GB are available; try {', or '.join(hint)} "
                         "(besa-hw estimate shows every component; --no-estimate skips this check)")
    logger.info("estimated peak %.2f GB of %s", est.peak / GB, "?" if est.capacity is None else
                f"{est.capacity / GB:.1f} GB available")
    return where
