"""``besa-hw run``: the main job, from a model to a speedup report.

prune (or reuse a finished run folder) -> perplexity dense vs pruned -> simulate
dense and sparse on the same hardware (decode and prefill) -> RUN_DIR/report/.

It prunes through the same pipeline as `prune` (a local safetensors model is streamed one
block at a time; --resume, --blocks, --dtype, --activations and the memory estimate work alike)
and evaluates block by block too, so a model larger than memory runs end to end.
--set takes PruneConfig fields and hardware fields, as prune.FIELD=V / hw.FIELD=V or unsectioned
where the name is only one of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import time
from pathlib import Path

from besa_hw.options import (add_eval_part_arg, add_hardware_args, add_phase_args, add_prune_args, add_scale_args,
                             build_configs, compute_dtype, hardware, phase_tokens, split_settings)

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="prune -> evaluate -> simulate -> report (the main job)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prune_args(p, method_default="besa", nsamples=16, seqlen=256)
    add_scale_args(p)
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--eval-data", default="pydoc",
                    help="text for perplexity: FILE | pydoc | wikitext2 | c4 (default pydoc; the test split of "
                         "wikitext2, a validation shard of c4). A text that calibration also reads is split (its "
                         "first 75%% for calibration, the rest for evaluation); evaluation text that overlaps the "
                         "calibration text is refused")
    add_eval_part_arg(ev)
    ev.add_argument("--eval-seqlen", type=int, default=512)
    ev.add_argument("--eval-windows", type=int, default=16, help="number of windows (bounds CPU time)")
    ev.add_argument("--no-eval", action="store_true", help="skip the perplexity evaluation")
    sim = p.add_argument_group("simulation")
    add_hardware_args(sim)
    add_phase_args(sim)
    p.add_argument("--reuse", action="store_true", help="reuse --out if it is a finished run (skip pruning)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-report", action="store_true", help="skip writing RUN_DIR/report/")
    p.add_argument("--out", help="run folder (default runs/<model>-<method>-<sparsity>)")
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> dict:
    """Check every input before any heavy work; returns what the run needs."""
    from besa_hw.evaluation import EvalConfig
    from besa_hw.models import check_context, resolve_device, resolve_model
    from besa_hw.outdir import check_out_dir
    from besa_hw.runfolder import check_run, is_finished_run
    from besa_hw.runs import activation_device, check_blocks, check_unfinished
    from pruning.calibration import HUB_SOURCES, calibration_part, check_disjoint, check_source, evaluation_part

    args.prune_set, args.overrides = split_settings(args.overrides, prune=True, hw=True)
    hw, phases = hardware(args), phase_tokens(args)
    cfg, calib = build_configs(args)
    ev = EvalConfig(args.eval_data, args.eval_seqlen, args.eval_windows, not args.no_eval, args.eval_part)
    out = Path(args.out or f"runs/{Path(args.model).stem}-{cfg.method}-{cfg.sparsity:g}")
    reuse = args.reuse and is_finished_run(out)
    check_out_dir(out, args.overwrite, reuse)
    device = resolve_device(args.device)
    job = {"hw": hw, "phases": phases, "cfg": cfg, "ev": ev, "out": out, "reuse": reuse, "device": device,
           "dtype": compute_dtype(args, device)}
    if reuse:
        check_run(out, need_model_id=ev.enabled)
        return job | {"calib": calib}
    spec = resolve_model(args.model, args.gguf_file)
    check_blocks(args.blocks, spec)
    check_context(spec, seqlen=calib.seqlen if cfg.needs_data else None, eval_seqlen=ev.seqlen if ev.enabled else None)
    if cfg.needs_data:
        check_source(calib.source)
    if ev.enabled:
        check_source(ev.data, "evaluation text")
    if calib.source not in HUB_SOURCES:  # split the text that both sides read
        calib = dataclasses.replace(calib, part=calibration_part(calib.source, calib.part,
                                                                  ev.data if ev.enabled else None))
    if ev.enabled and cfg.needs_data:
        eval_part = evaluation_part(ev.data, ev.part, {"dataset": calib.source, "part": calib.part})
        logger.info("calibration vs evaluation text: %s",
                    check_disjoint(calib.source, calibration_part(calib.source, calib.part), ev.data, eval_part))
    job["partial"] = check_unfinished(out, args.resume, args.overwrite)
    job["activations"] = activation_device(spec, cfg, calib, device, job["dtype"], args.activations,
                                           args.no_estimate)
    return job | {"calib": calib}


def run(args: argparse.Namespace) -> int:
    from besa_hw.evaluation import evaluate_run
    from besa_hw.outdir import staged_dir
    from besa_hw.pipeline import Timings, simulate_run
    from besa_hw.runfolder import read_manifest
    from besa_hw.runs import keep_if_resumable, prune_to_run

    start = time.perf_counter()
    job = _validate(args)
    out, ev, hw, phases, reuse = job["out"], job["ev"], job["hw"], job["phases"], job["reuse"]
    timings = Timings()
    # Everything is built in a staging copy beside --out and swapped in only when complete:
    # a failure or Ctrl-C at any step leaves the previous run exactly as it was (and a prune's
    # finished blocks in its partial folder, for --resume).
    with staged_dir(out, "run", overwrite=args.overwrite, reuse=reuse) as work:
        if reuse:
            print(f"reusing finished run {out}")
            for stale in ("sim", "report"):  # results of the previous hardware must not mix in
                shutil.rmtree(work / stale, ignore_errors=True)
            ppl = read_manifest(work).get("perplexity") or {}
            needs_eval = ev.enabled and ppl.get("pruned") is None
        else:
            t = time.perf_counter()
            try:
                # a method that updates the kept weights (OBS) is evaluated from its saved model
                prune_to_run(args.model, args.gguf_file, job["cfg"], job["calib"], work, device=job["device"],
                             save_model=args.save_model or (ev.enabled and job["cfg"].updates_weights), progress=True, dtype=job["dtype"], blocks=args.blocks,
                             checkpoint_dir=job["partial"], resume=args.resume, activations=job["activations"])
            except BaseException:
                keep_if_resumable(job["partial"], out)
                raise
            timings.add("prune", t)
            ppl, needs_eval = {}, ev.enabled
        if args.blocks is not None:
            print(f"pruned the first {args.blocks} blocks (a measurement run): evaluation, simulation and report "
                  "skipped")
            simulate = False
        else:
            simulate = True
        if needs_eval and simulate:
            t = time.perf_counter()
            ppl = evaluate_run(work, ev, job["device"], dense=not reuse or ppl.get("dense") is None,
                               progress=True, dtype=job["dtype"])
            timings.add("eval", t)
        totals, report = {}, None
        if simulate:
            t = time.perf_counter()
            totals = simulate_run(work, hw, phases, args.compute_only, progress=True, context=args.context,
                                  linear_only=args.linear_only)
            timings.add("simulate", t)
            if not args.no_report:
                from besa_hw.report import build_report

                t = time.perf_counter()
                build_report(work, label=str(out))
                report = out / "report"
                timings.add("report", t)
        manifest = read_manifest(work)
    print_summary(out, manifest, ppl, totals, report, timings, time.perf_counter() - start,
                  hw=hw, phases=phases, linear_only=args.linear_only)
    return 0


def print_summary(out: Path, manifest: dict, ppl: dict, totals: dict, report, timings, seconds: float, *,
                  hw, phases: dict[str, int], linear_only: bool = False) -> None:
    from simulator import step_metrics
    from simulator.simulate import area_power_words, saving_words

    steps = ", ".join(f"{k} {v:.0f} s" for k, v in timings.steps.items())
    print(f"\nrun {out}: {manifest['method']} at {manifest['achieved_sparsity']:.4f} achieved sparsity")
    if ppl.get("pruned") is not None:
        dense = f"{ppl['dense']:.2f}" if ppl.get("dense") is not None else "?"
        print(f"perplexity ({ppl['data']}, {ppl['windows']} x {ppl['seqlen']} tokens): "
              f"dense {dense} -> pruned {ppl['pruned']:.2f}")
    for ph, summary in totals.items():
        m = step_metrics(summary, hw, phases[ph])
        scope = "Linear layers only" if linear_only else "whole decoder step"
        print(f"{ph} ({phases[ph]} tokens, {scope}) on {hw.name}: speedup vs dense Linear-only "
              f"{m['speedup_linear']:.3f}x, end-to-end {m['speedup_e2e']:.3f}x; {m['latency_ms']:.3f} ms, "
              f"{m['tokens_per_s']:.1f} tokens/s (dense {m['dense_tokens_per_s']:.1f}); "
              f"energy {saving_words(m['energy_saving'])}, {m['energy_per_token_mj']:.4f} mJ per token, "
              f"{m['tokens_per_joule']:.1f} tokens/J, {m['power_mw']:.4g} mW")
    if totals:
        print(area_power_words(m).split(";")[0])
    if report is not None:
        print(f"report: {report}")
    print(f"total {seconds:.0f} s ({steps})")
