"""The main job: prune (or reuse a run) -> perplexity -> simulate dense vs sparse -> report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from besa_hw.outdir import mark
from besa_hw.pipeline import WorkloadSpec, build_ops, simulate, write_json, write_table
from simulator import HardwareConfig, summarize

logger = logging.getLogger(__name__)

__all__ = ["EvalConfig", "Timings", "simulate_run", "evaluate_run", "evaluate_run_tasks", "prune_and_evaluate",
           "is_finished_run", "check_run", "check_held_out"]


@dataclass(frozen=True)
class EvalConfig:
    """Perplexity evaluation: the first `max_windows` (None: all) non-overlapping windows of the
    `part` of `data` that evaluation reads (auto | all | held-out; see pruning.calibration)."""

    data: str = "pydoc"
    seqlen: int = 512
    max_windows: int | None = 16
    enabled: bool = True
    part: str = "auto"

    def __post_init__(self) -> None:
        from pruning.config import EVAL_PARTS

        if self.part not in EVAL_PARTS:
            raise ValueError(f"evaluation part must be one of {', '.join(EVAL_PARTS)}, got {self.part!r}")
        if self.seqlen < 2:
            raise ValueError(f"evaluation seqlen must be >= 2, got {self.seqlen}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"evaluation needs at least one window, got windows {self.max_windows}")


@dataclass
class Timings:
    steps: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, start: float) -> None:
        self.steps[name] = round(time.perf_counter() - start, 2)


def check_run(run_dir: str | Path, need_model_id: bool = True) -> dict:
    """Validate a finished run folder before any work: its manifest (naming the base model when
    ``need_model_id``), its layers and a readable masks file. Returns the manifest."""
    from pruning.export import read_manifest
    from simulator.workload import run_ops

    manifest = read_manifest(run_dir)
    run_ops(run_dir, 1)  # manifest model dims and layers, masks file header; no mask is read
    if need_model_id and not manifest["model"].get("id"):
        raise ValueError(f"{Path(run_dir) / 'manifest.json'}: 'model' lacks the key 'id' (the base model)")
    return manifest


def is_finished_run(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "manifest.json").is_file() and (run_dir / "masks.safetensors").is_file()


def simulate_run(run_dir: str | Path, hw: HardwareConfig, phases: dict[str, int], compute_only: bool = False,
                 progress: bool = False, context: int | None = None,
                 linear_only: bool = False) -> dict[str, pd.DataFrame]:
    """Simulate a run folder's masks per phase (the whole decoder step unless ``linear_only``; decode
    attends to ``context`` cached tokens); writes RUN_DIR/sim/<phase>/{layers,summary,blocks}.csv."""
    sim_dir = Path(run_dir) / "sim"
    totals = {}
    for phase, tokens in phases.items():
        spec = WorkloadSpec(run_dir=str(run_dir), phase=phase, tokens=tokens, linear_only=linear_only,
                            context=context if phase == "decode" else None)
        layers, summary = simulate(build_ops(spec), hw, compute_only, progress, desc=f"simulate {phase}")
        write_table(layers, sim_dir / phase / "layers.csv")
        write_table(summary, sim_dir / phase / "summary.csv")
        write_table(summarize(layers, by="block"), sim_dir / phase / "blocks.csv")
        mark(sim_dir / phase, "simulate")
        totals[phase] = summary
    write_json(hw, sim_dir / "hardware.json")
    return totals


def evaluate_run(run_dir: str | Path, ev: EvalConfig, device: str, dense: bool = True,
                 progress: bool = False) -> dict:
    """Perplexity of a finished run (and of its dense base model); updates the manifest.

    The base model is loaded once: evaluated dense, then masked in place (unless the run
    saved its own pruned model).
    """
    from besa_hw.runs import load_run_model, read_finished_run, saved_model_dir
    from besa_hw.models import check_context, load_model
    from pruning.calibration import evaluation_part, text_of, tokenize
    from pruning.eval import perplexity
    from pruning.export import read_manifest

    manifest = read_manifest(run_dir)
    spec = manifest["model"]
    saved_model_dir(run_dir)  # fail before any evaluation if the run cannot be reproduced
    read_finished_run(run_dir)  # and if it is partial, or its masks unreadable, of the wrong dtype or shape, missing
    part = evaluation_part(ev.data, ev.part, manifest.get("calibration"))
    check_held_out(manifest.get("calibration"), ev.data, part)
    base = dense_ppl = ids = None
    if dense:
        base = load_model(spec["id"], spec.get("gguf_file"), device=device)[:2]
        check_context(base[0], seqlen=ev.seqlen)
        ids = tokenize(base[1], text_of(ev.data, "evaluation", part))
        dense_ppl = perplexity(base[0], ids, ev.seqlen, ev.max_windows, progress=progress)
    lm, tok, _ = load_run_model(run_dir, device, base=base)
    check_context(lm, seqlen=ev.seqlen)
    ids = tokenize(tok, text_of(ev.data, "evaluation", part)) if ids is None else ids
    pruned = perplexity(lm, ids, ev.seqlen, ev.max_windows, progress=progress)
    return record_perplexity(run_dir, ev, part, dense_ppl, pruned, ids.numel())


def evaluate_run_tasks(run_dir: str | Path, loaded, cfg, device: str, dense: bool = False) -> dict:
    """Zero-shot accuracy of a finished run on ``loaded`` tasks (besa_hw.tasks), and of its dense base
    model when ``dense`` (loaded once, evaluated, then masked in place); updates the manifest."""
    from besa_hw.runs import load_run_model, read_finished_run, saved_model_dir
    from besa_hw.models import load_model
    from besa_hw.tasks import evaluate_tasks, record_tasks
    from pruning.export import read_manifest

    spec = read_manifest(run_dir)["model"]
    saved_model_dir(run_dir)  # fail before any evaluation if the run cannot be reproduced
    read_finished_run(run_dir)
    base = dense_results = None
    if dense:
        base = load_model(spec["id"], spec.get("gguf_file"), device=device)[:2]
        dense_results = evaluate_tasks(*base, loaded, cfg)
    lm, tok, _ = load_run_model(run_dir, device, base=base)
    pruned = evaluate_tasks(lm, tok, loaded, cfg)
    return record_tasks(run_dir, pruned, dense_results)


def check_held_out(calibration: dict | None, eval_source: str, eval_part: str | None) -> None:
    """Refuse evaluation text that overlaps a run's calibration text (ValueError)."""
    from pruning.calibration import HUB_SOURCES, check_disjoint, recorded_part

    source = (calibration or {}).get("dataset")
    if source is None:  # magnitude pruning uses no data
        return
    if source not in ("pydoc", *HUB_SOURCES) and not Path(source).is_file():
        logger.warning("calibration text %s not found: overlap with %s not checked", source, eval_source)
        return
    logger.info("calibration vs evaluation text: %s",
                check_disjoint(source, recorded_part(calibration), eval_source, eval_part))


def record_perplexity(run_dir: str | Path, ev: EvalConfig, part: str | None, dense: float | None, pruned: float,
                      n_tokens: int) -> dict:
    from pruning.calibration import describe_split
    from pruning.export import update_manifest

    ppl = {"dense": dense, "pruned": pruned, "data": ev.data, "seqlen": ev.seqlen,
           "windows": min(n_tokens // ev.seqlen, ev.max_windows or n_tokens),
           **describe_split(ev.data, "evaluation", part)}
    update_manifest(run_dir, {"perplexity": ppl})
    return ppl


def prune_and_evaluate(model: str, gguf_file: str | None, cfg, calib, out: str | Path, ev: EvalConfig,
                       device: str, save_model: bool = False,
                       progress: bool = False, timings: Timings | None = None) -> dict | None:
    """Load once: dense perplexity, prune in place, write the run folder, pruned perplexity."""
    from besa_hw.runs import write_result
    from besa_hw.models import check_context, load_model
    from pruning import prune_model
    from pruning.calibration import evaluation_part, get_calibration, text_of, tokenize
    from pruning.eval import perplexity
    from pruning.sequential import check_model_fits

    timings = timings or Timings()
    t = time.perf_counter()
    lm, tok, spec = load_model(model, gguf_file, device=device)
    check_model_fits(lm, cfg)
    check_context(lm, seqlen=calib.seqlen, eval_seqlen=ev.seqlen if ev.enabled else None)
    timings.add("load", t)
    ids = dense = None
    part = evaluation_part(ev.data, ev.part, {"dataset": calib.source, "part": calib.part})
    if ev.enabled:
        t = time.perf_counter()
        ids = tokenize(tok, text_of(ev.data, "evaluation", part))
        dense = perplexity(lm, ids, ev.seqlen, ev.max_windows, progress=progress)
        timings.add("eval dense", t)
    t = time.perf_counter()
    calib_ids = get_calibration(tok, calib).to(device) if cfg.method != "magnitude" else None
    result = prune_model(lm, calib_ids, cfg, progress=progress)
    write_result(out, lm, tok, spec, cfg, calib, result, time.perf_counter() - t,
                 save_model=save_model)
    timings.add("prune", t)
    if not ev.enabled:
        return None
    t = time.perf_counter()
    pruned = perplexity(lm, ids, ev.seqlen, ev.max_windows, progress=progress)
    timings.add("eval pruned", t)
    return record_perplexity(out, ev, part, dense, pruned, ids.numel())
