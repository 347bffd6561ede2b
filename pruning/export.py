"""Run folder writer/reader: ``masks.safetensors`` + ``manifest.json`` (+ ``quant.safetensors`` when
quantized, see :mod:`pruning.quant_export`; + ``model/`` when asked).

Writes are atomic: everything goes to a hidden temporary sibling folder that is renamed into
place only when complete, so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MASKS = "masks.safetensors"
MODEL_DIR = "model"
EMPTY_PERPLEXITY = {"dense": None, "pruned": None, "data": None, "seqlen": None, "windows": None}
FOLDER_MODE, FILE_MODE = 0o755, 0o644  # before the umask, like mkdir and open would give


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_run(out_dir: str | Path, masks: dict[str, torch.Tensor], manifest: dict,
              save_model: Callable[[Path], None] | None = None, quant: dict | None = None,
              checkpoint=None) -> Path:
    """Atomically write a run folder into ``out_dir``, which must not exist or be empty.

    ``save_model(path)`` (e.g. ``model.save_pretrained``) fills ``model/``. Replacing an existing
    run is the caller's decision: ``besa_hw.outdir.staged_dir`` builds the new folder beside the
    old one and swaps it in only when complete. ``quant`` (module path -> QuantParams) is written
    to ``quant.safetensors``. A streamed prune passes its :class:`pruning.checkpoint.BlockCheckpoint`
    instead of ``masks``/``quant``: its blocks are streamed into the same files.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder already exists and is not empty: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        from pruning.quant_export import QUANT, QUANT_FORMAT, save_quant

        if checkpoint is not None:
            from pruning.arch import module_path
            checkpoint.write_masks(tmp / MASKS, module_path)
            checkpoint.write_quant(tmp / QUANT, module_path, {"format": QUANT_FORMAT})
        else:
            save_file({k: v.detach().to("cpu", torch.bool).contiguous() for k, v in masks.items()}, str(tmp / MASKS))
        if quant:
            save_quant(tmp / QUANT, quant)
        if save_model is not None:
            save_model(tmp / MODEL_DIR)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _normal_permissions(tmp)
        os.replace(tmp, out)  # an empty existing folder is replaced too (rename(2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _normal_permissions(root: Path) -> None:
    """Folders 0755 and files 0644 (less the umask): mkdtemp makes the folder private (0700) and
    safetensors writes its files 0600, but a run folder is meant to be shared."""
    mask = _umask()
    os.chmod(root, FOLDER_MODE & ~mask)
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, (FOLDER_MODE if path.is_dir() else FILE_MODE) & ~mask)


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest of a run folder (FileNotFoundError naming the folder when missing)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"not a run folder (no {MANIFEST}): {run_dir}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid JSON manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def read_run(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(masks, manifest) of a run folder; masks are bool (out, in) keyed by module path.

    Every layer the manifest lists must have a mask of its shape, stored as bool (or as 0/1
    integers); anything else is a ValueError naming the key, never a silently scaled weight.
    """
    manifest = read_manifest(run_dir)
    path = Path(run_dir) / MASKS
    if not path.is_file():
        raise FileNotFoundError(f"run folder has no {MASKS}: {run_dir}")
    try:
        raw = load_file(str(path))
    except SafetensorError as exc:
        raise ValueError(f"{path}: damaged or truncated safetensors file ({exc})") from None
    return check_masks(raw, manifest.get("layers") or {}, path), manifest


def check_masks(masks: dict[str, torch.Tensor], layers: dict, path: Path) -> dict[str, torch.Tensor]:
    """Bool masks, one per manifest layer, each of the layer's shape (0/1 integers are converted)."""
    missing = [k for k in layers if k not in masks]
    if missing:
        raise ValueError(f"{path}: no mask for {missing[0]} ({len(missing)} of {len(layers)} missing)")
    out = {}
    for key, mask in masks.items():
        if layers and key not in layers:
            raise ValueError(f"{path}: mask {key} is not a layer of the manifest")
        if mask.dtype != torch.bool:
            if mask.dtype.is_floating_point or mask.dtype.is_complex or not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError(f"{path}: mask {key} has dtype {str(mask.dtype).removeprefix('torch.')}; "
                                 "masks must be bool (or 0/1 integers)")
            mask = mask != 0
        shape = layers.get(key, {}).get("shape")
        if shape is not None and list(mask.shape) != [int(n) for n in shape]:
            raise ValueError(f"{path}: mask {key} has shape {tuple(mask.shape)}, the layer is {tuple(shape)}")
        out[key] = mask
    return out


def update_manifest(run_dir: str | Path, updates: dict) -> dict:
    """Merge ``updates`` into manifest.json atomically (write a temp file, then os.replace)."""
    manifest = read_manifest(run_dir)
    manifest.update(updates)
    path = Path(run_dir) / MANIFEST
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=run_dir)
    os.fchmod(fd, FILE_MODE & ~_umask())  # mkstemp makes it private (0600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return manifest


def build_manifest(*, model_info: dict, method: str, hyperparameters: dict, target_sparsity: float,
                   achieved_sparsity: float, layers: dict, calibration: dict | None, seed: int,
                   versions: dict, wall_seconds: float, command: str | None = None, git_commit: str | None = None,
                   blocks_pruned: int | None = None, streamed: bool = False,
                   block_seconds: list[float] | None = None, extra: dict | None = None) -> dict:
    """The whole manifest of a prune, in the documented key order (its one author; evaluation later
    adds its results with :func:`update_manifest`). ``extra``: optional facts of the run (a hardware
    target's record, CUDA memory)."""
    return {"format_version": FORMAT_VERSION, "model": model_info, "method": method,
            "hyperparameters": hyperparameters, "target_sparsity": target_sparsity,
            "achieved_sparsity": achieved_sparsity, "layers": layers, "calibration": calibration,
            "seed": seed, "versions": versions, "wall_seconds": wall_seconds,
            "perplexity": dict(EMPTY_PERPLEXITY), "command": command, "git_commit": git_commit,
            "blocks_pruned": blocks_pruned if blocks_pruned is not None else model_info.get("num_hidden_layers"),
            "streamed": streamed, "block_seconds": list(block_seconds or []), **(extra or {})}
