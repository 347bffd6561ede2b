"""Quantized weights on disk: the run folder's ``quant.safetensors`` and a compressed-tensors HF folder.

``quant.safetensors`` (format ``besa-hw-quant/1``), for every quantized Linear at module path P:

* ``P.codes``  uint8 (out, in): the integer codes, 0 .. 2^bits - 1, one byte each (unpacked);
* ``P.scales`` float32 (out, groups): the scale of each group of ``group_size`` consecutive inputs;
* ``P.zeros``  uint8 (out, groups): the zero point (the code of an exact 0).

W[r, c] = (codes[r, c] - zeros[r, c // G]) * scales[r, c // G], G = group size (``in`` for -1).
Bits and group size are in the manifest's ``layers[P]["quant"]``. Pruned weights have the code
``zeros[r, c // G]``; ``masks.safetensors`` says which they are.

:func:`save_compressed_tensors` writes a Hugging Face folder in the ``pack-quantized`` format of the
``compressed-tensors`` library (vLLM and llm-compressor read it; ``transformers`` loads it back
through its compressed-tensors quantizer). That library (>= 0.15, the versions ``transformers`` 5
accepts) has no sparse compressor any more (``sparsity_config`` is always written empty), so the
pruned weights are stored densely, as the code of 0: the folder is exactly the quantized model,
but its sparsity is only visible in the run folder's masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pruning.quant import QuantParams

QUANT = "quant.safetensors"
QUANT_FORMAT = "besa-hw-quant/1"


def save_quant(path: str | Path, quant: dict[str, QuantParams]) -> None:
    """Write codes, scales and zero points of every quantized Linear (layout in the module docstring)."""
    tensors = {}
    for key, q in quant.items():
        tensors[f"{key}.codes"] = q.codes.to("cpu", torch.uint8).contiguous()
        tensors[f"{key}.scales"] = q.scales.to("cpu", torch.float32).contiguous()
        tensors[f"{key}.zeros"] = q.zeros.to("cpu", torch.uint8).contiguous()
    save_file(tensors, str(path), metadata={"format": QUANT_FORMAT})


def load_quant(path: str | Path, layers: dict) -> dict[str, QuantParams]:
    """QuantParams per module path of ``layers`` (the manifest's per-layer records: bits, group size);
    only those layers' tensors are read (a streamed evaluation reads one block's at a time)."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        stored = set(fh.keys())
        for key, rec in layers.items():
            spec = rec.get("quant")
            if spec is None:
                continue
            if f"{key}.codes" not in stored:
                raise ValueError(f"{path}: no codes for {key}")
            out[key] = QuantParams(fh.get_tensor(f"{key}.codes"), fh.get_tensor(f"{key}.scales").float(),
                                   fh.get_tensor(f"{key}.zeros"), int(spec["bits"]), int(spec["group_size"]))
    return out


def _scheme(q: QuantParams):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    grouped = q.group != -1
    args = QuantizationArgs(num_bits=q.bits, type="int", symmetric=False,
                            strategy="group" if grouped else "channel", group_size=q.group if grouped else None)
    return QuantizationScheme(targets=["Linear"], weights=args)


def _compress_layer(q: QuantParams, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """compressed-tensors tensors of one Linear: weight_packed, weight_scale, weight_zero_point, weight_shape.

    Its integers are signed (code - 2^(bits-1)); (code - zero) * scale is unchanged by the shift.
    """
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor

    offset = 2 ** (q.bits - 1)
    local = {"weight": q.dequantize().to(dtype), "weight_scale": q.scales.to(dtype),
             "weight_zero_point": (q.zeros.to(torch.int16) - offset).to(torch.int8)}
    return PackedQuantizationCompressor.compress(local, _scheme(q))


def save_compressed_tensors(model: torch.nn.Module, tokenizer, quant: dict[str, QuantParams], path: str | Path) -> None:
    """Save ``model`` with its quantized Linears in compressed-tensors ``pack-quantized`` format.

    All quantized Linears must share bits and group size (one config group); every other Linear
    (``lm_head``) is listed in ``ignore`` and kept in the model's dtype.
    """
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig

    path = Path(path)
    kinds = {(q.bits, q.group) for q in quant.values()}
    if len(kinds) != 1:
        raise ValueError(f"compressed-tensors export needs one bit width and group size, got {sorted(kinds)}")
    model.save_pretrained(path, safe_serialization=True, max_shard_size="1000GB")
    tokenizer.save_pretrained(path)
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        raise ValueError(f"expected one safetensors shard in {path}, found {len(files)}")
    state, dtype = load_file(str(files[0])), next(model.parameters()).dtype
    for key, q in quant.items():
        state.pop(f"{key}.weight")
        state.update({f"{key}.{name}": t.contiguous() for name, t in _compress_layer(q, dtype).items()})
    save_file(state, str(files[0]), metadata={"format": "pt"})
    ignore = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in quant]
    config = QuantizationConfig(config_groups={"group_0": _scheme(next(iter(quant.values())))},
                                format="pack-quantized", quantization_status="compressed", ignore=ignore)
    ModelCompressor(quantization_config=config).update_config(str(path))
    _check_config(path)


def _check_config(path: Path) -> None:
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("quantization_config", {}).get("format") != "pack-quantized":
        raise ValueError(f"{path}/config.json: compressed-tensors did not record the pack-quantized format")
