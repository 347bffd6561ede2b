"""Run folder writer/reader: ``masks.safetensors`` + ``manifest.json`` (+ ``model/`` when asked).

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


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Validate the output folder before work starts: it must not exist (unless ``overwrite``)."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ValueError(f"output folder already exists: {out} (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path is a file, not a folder: {out}")
    return out


def write_run(out_dir: str | Path, masks: dict[str, torch.Tensor], manifest: dict,
              save_model: Callable[[Path], None] | None = None, overwrite: bool = False) -> Path:
    """Atomically write a run folder; ``save_model(path)`` (e.g. ``model.save_pretrained``) fills ``model/``."""
    out = check_out_dir(out_dir, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_file({k: v.detach().to("cpu", torch.bool).contiguous() for k, v in masks.items()}, str(tmp / MASKS))
        if save_model is not None:
            save_model(tmp / MODEL_DIR)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _normal_permissions(tmp)
        _swap_into_place(tmp, out)
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


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest of a run folder (FileNotFoundError naming the folder when missing)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"not a run folder (no {MANIFEST}): {run_dir}")
    return json.loads(path.read_text())


def read_run(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(masks, manifest) of a run folder; masks are bool (out, in) keyed by module path."""
    manifest = read_manifest(run_dir)
    path = Path(run_dir) / MASKS
    if not path.is_file():
        raise FileNotFoundError(f"run folder has no {MASKS}: {run_dir}")
    return load_file(str(path)), manifest


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
                   versions: dict, wall_seconds: float) -> dict:
    """The manifest dict in the documented key order."""
    return {"format_version": FORMAT_VERSION, "model": model_info, "method": method,
            "hyperparameters": hyperparameters, "target_sparsity": target_sparsity,
            "achieved_sparsity": achieved_sparsity, "layers": layers, "calibration": calibration,
            "seed": seed, "versions": versions, "wall_seconds": wall_seconds,
            "perplexity": dict(EMPTY_PERPLEXITY)}
