"""Mask rules (pure tensor functions). A mask is a bool tensor shaped like the weight, True = kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch


def row_ranks(score: torch.Tensor) -> torch.Tensor:
    """Rank of each weight inside its row by ascending score (0 = least important), int64 (out, in)."""
    order = torch.argsort(score, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return ranks


def mask_from_row_counts(score: torch.Tensor, prune_counts: torch.Tensor) -> torch.Tensor:
    """Prune the ``prune_counts[r]`` lowest-score weights of each row r (vectorised over rows)."""
    return row_ranks(score) >= prune_counts.to(score.device).long().unsqueeze(1)


def rowwise_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Uniform per-row unstructured mask: each row loses round(sparsity * in) weights (Wanda's comparison group)."""
    k = int(round(sparsity * score.shape[1]))
    return mask_from_row_counts(score, torch.full((score.shape[0],), k, device=score.device))


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M semi-structured mask: keep the ``n`` highest scores of every ``m`` consecutive inputs of a row."""
    out, cols = score.shape
    if cols % m:
        raise ValueError(f"N:M pattern {n}:{m} does not divide the input width {cols}")
    groups = score.reshape(out, cols // m, m)
    keep_idx = torch.topk(groups, n, dim=2).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, keep_idx, True)
    return mask.reshape(out, cols)


def mask_sparsity(mask: torch.Tensor) -> float:
    """Fraction of pruned (False) entries."""
    return 1.0 - mask.float().mean().item()


def row_sparsity_summary(mask: torch.Tensor) -> dict[str, float]:
    """min / max / mean / std of the per-row sparsity of a mask."""
    rows = 1.0 - mask.float().mean(dim=1)
    std = rows.std().item() if rows.numel() > 1 else 0.0
    return {"min": rows.min().item(), "max": rows.max().item(), "mean": rows.mean().item(), "std": std}


def load_profile(path: str | Path) -> dict[str, float]:
    """Read a per-layer sparsity profile: a flat ``{module_path: sparsity}`` JSON or a run manifest.json.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not valid JSON or a sparsity is outside [0, 1).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"profile {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"profile file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"profile {path} is not a UTF-8 text JSON file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"profile {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("layers"), dict):
        data = {k: v.get("achieved_sparsity") if isinstance(v, dict) else v for k, v in data["layers"].items()}
    return validate_profile(data, str(path))


def validate_profile(data: object, where: str = "profile") -> dict[str, float]:
    """Check a profile mapping: string keys, sparsities in [0, 1)."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{where}: expected a non-empty JSON object {{module_path: sparsity}}")
    out = {}
    for key, value in data.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{where}: sparsity for {key} must be a number in [0, 1), got {value!r}")
        out[str(key)] = float(value)
    return out
