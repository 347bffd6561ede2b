"""Command-line option groups shared by several commands (hardware, phases, workloads).

Each command module registers its own parser; the option groups that more than one command
offers live here, so that no command borrows from a sibling command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "prune"


def add_hardware_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default="besa-64x64", metavar="PRESET|FILE.toml",
                   help="hardware preset name or TOML file (default: besa-64x64)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a HardwareConfig field, e.g. --set dram_gbps=25.6 (repeatable)")
    p.add_argument("--compute-only", action="store_true",
                   help="ignore memory time, as the BESA paper's simulator does")


def add_phase_args(p: argparse.ArgumentParser) -> None:
    """--phase/--decode-tokens/--prefill-tokens, for commands that simulate several phases (``--phase``
    names the phases everywhere; here it takes a comma-separated list, and ``--phases`` is its alias)."""
    p.add_argument("--phase", "--phases", dest="phases", default="decode,prefill",
                   help="comma-separated: decode, prefill (default both)")
    p.add_argument("--decode-tokens", type=int, default=1, help="batch size of the decode phase (default 1)")
    p.add_argument("--prefill-tokens", type=int, default=2048,
                   help="prompt length of the prefill phase (default 2048)")
    p.add_argument("--context", type=int, default=2048,
                   help="decode: cached tokens each sequence attends to (default 2048)")
    p.add_argument("--linear-only", action="store_true",
                   help="simulate only the seven projections of each block (no attention, vector ops, head)")


def phase_tokens(args: argparse.Namespace) -> dict[str, int]:
    """{phase: tokens} from add_phase_args' flags, validated."""
    tokens = {"decode": args.decode_tokens, "prefill": args.prefill_tokens}
    if args.context < 1:
        raise ValueError(f"--context must be >= 1, got {args.context}")
    names = [s.strip() for s in args.phases.split(",") if s.strip()]
    bad = [n for n in names if n not in tokens]
    if bad or not names:
        raise ValueError(f"--phase takes decode and/or prefill, got {args.phases!r}")
    from simulator.workload import check_tokens

    return {n: check_tokens(tokens[n], f"--{n}-tokens") for n in names}


def add_eval_part_arg(p) -> None:
    """--eval-part, for the commands that evaluate perplexity (eval, run)."""
    p.add_argument("--eval-part", choices=("auto", "all", "held-out"), default="auto",
                   help="what evaluation reads of pydoc or FILE: all of it from its start (the literature's "
                        "protocol), or the held-out last 25%%; auto (default): held-out for pydoc and for the text "
                        "the run split for calibration, all otherwise")


def add_workload_args(p: argparse.ArgumentParser, require_source: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=require_source)
    src.add_argument("--run", metavar="RUN_DIR", help="a pruning run folder (masks.safetensors + manifest.json)")
    src.add_argument("--shape", metavar="NAME", help="model shape with synthetic masks "
                     "(smollm2-135m, llama-7b, llama-13b, llama-30b, llama2-70b)")
    p.add_argument("--sparsity", type=float, help="synthetic masks: sparsity (default 0.5)")
    p.add_argument("--profile", metavar="FILE.json", help="synthetic masks: per-layer sparsities "
                   "({module_path_or_op: s}, or a run's manifest.json)")
    p.add_argument("--row-dist", choices=("none", "uniform", "normal"), default="none",
                   help="synthetic masks: how the sparsity of each weight row varies around the layer's "
                        "sparsity: none (every row the same; the default), uniform (each row within "
                        "+/- S of it) or normal (standard deviation S), with S set by --row-spread")
    p.add_argument("--nm", metavar="N:M", help="synthetic masks: N:M structured sparsity, e.g. 2:4 "
                   "(N kept in every group of M inputs; sets the sparsity to 1 - N/M)")
    p.add_argument("--wbits", type=int, choices=(2, 3, 4, 8), help="synthetic masks: quantize the pruned "
                   "Linears' weights to B bits (one fp16 scale and a B-bit zero point per group)")
    p.add_argument("--group-size", type=int, default=-1, help="with --wbits: inputs per group (-1: per row)")
    p.add_argument("--row-spread", type=float, default=0.0, metavar="S",
                   help="synthetic masks: half-width (uniform) or standard deviation (normal) of the "
                        "per-row sparsity, e.g. 0.08 (default 0)")
    p.add_argument("--seed", type=int, default=0, help="synthetic masks: random seed")
    p.add_argument("--exact-masks", action="store_true",
                   help="synthetic masks: materialise every mask and count it, instead of drawing its "
                        "statistics from their distributions (slower; same cycles within 0.5%%)")
    p.add_argument("--phase", choices=("decode", "prefill"), default="decode",
                   help="decode: --tokens defaults to 1; prefill: to 2048")
    p.add_argument("--tokens", type=int, help="tokens per op (batch for decode, prompt length for prefill)")
    p.add_argument("--context", type=int, help="decode: cached tokens each sequence attends to (default 2048)")
    p.add_argument("--linear-only", action="store_true",
                   help="only the seven projections of each block (no attention, vector ops, lm_head, embedding)")
    p.add_argument("--blocks", type=int, help="only the first N transformer blocks")


def workload_spec(args: argparse.Namespace):
    from besa_hw.pipeline import WorkloadSpec
    from simulator.synthetic import AllocationProfile, load_profile
    from simulator.workload import parse_nm_text

    if args.run is not None:
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"run folder not found: {args.run}")
        synthetic = {"--sparsity": args.sparsity is not None, "--profile": args.profile is not None,
                     "--row-dist": args.row_dist != "none", "--row-spread": args.row_spread != 0.0,
                     "--nm": args.nm is not None}
        used = [flag for flag, given in synthetic.items() if given]
        if used:
            raise ValueError(f"{used[0]} applies to synthetic masks (--shape), not to --run (a run's masks decide it)")
    per_layer = load_profile(args.profile) if args.profile else {}
    nm = parse_nm_text(args.nm)
    if nm and args.sparsity is not None and abs(args.sparsity - (1 - nm[0] / nm[1])) > 1e-9:
        raise ValueError(f"--nm {args.nm} means sparsity {1 - nm[0] / nm[1]:g}; "
                         f"--sparsity {args.sparsity:g} contradicts it")
    sparsity = 1 - nm[0] / nm[1] if nm else (0.5 if args.sparsity is None else args.sparsity)
    if args.group_size != -1 and args.wbits is None:
        raise ValueError("--group-size applies with --wbits (the quantization groups)")
    if args.group_size == 0 or args.group_size < -1:
        raise ValueError(f"--group-size must be -1 (per row) or a positive number of inputs, got {args.group_size}")
    profile = AllocationProfile(sparsity, per_layer, args.row_dist, args.row_spread, args.seed,
                                exact_masks=args.exact_masks, nm=nm, wbits=args.wbits,
                                group_size=args.group_size if args.wbits else None)
    return WorkloadSpec(run_dir=args.run, shape=args.shape, profile=profile, phase=args.phase,
                        tokens=args.tokens, blocks=args.blocks, context=args.context,
                        linear_only=args.linear_only)


def hardware(args: argparse.Namespace):
    from simulator.config import load_hardware, parse_overrides

    return load_hardware(args.hw, parse_overrides(split_settings(args.overrides, prune=False, hw=True)[1]))


def add_scale_args(p: argparse.ArgumentParser) -> None:
    """Block streaming, resume and the memory estimate (prune and run)."""
    s = p.add_argument_group("scale (block streaming)")
    s.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="dtype of the block being pruned and of the calibration activations (default: float32 on "
                        "cpu, bfloat16 on cuda); allocation logits, clipping parameters and losses stay float32")
    s.add_argument("--activations", choices=("auto", "device", "cpu"), default="auto",
                   help="where the calibration activations live: on the compute device, or in CPU RAM when they do "
                        "not fit there (auto: decided from the memory estimate)")
    s.add_argument("--blocks", type=int, metavar="N",
                   help="prune only the first N blocks (for time/memory measurements; eval and simulate refuse it)")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted prune into --out from its last finished block (same settings)")
    s.add_argument("--no-estimate", action="store_true",
                   help="skip the memory check that refuses a prune which would not fit")


def compute_dtype(args: argparse.Namespace, device: str) -> str:
    return args.dtype or ("float32" if device == "cpu" else "bfloat16")


def add_prune_args(p: argparse.ArgumentParser, method_default: str | None = None, nsamples: int = 32,
                   seqlen: int = 512) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--model", default="smollm2-135m", help="HF folder, hub id, .gguf file or smollm2-135m")
    g.add_argument("--gguf-file", help="GGUF file name inside the --model folder")
    g.add_argument("--method", default=method_default, required=method_default is None,
                   choices=("besa", "wanda", "sparsegpt", "magnitude", "search"),
                   help="search: Wanda masks, per-layer sparsity and format from a search under --target-speedup")
    g.add_argument("--preset", help="TOML preset (path or name in configs/prune), overridden by flags")
    g.add_argument("--sparsity", type=float, help="target sparsity in [0, 1) (default 0.5)")
    g.add_argument("--allocation", choices=("row", "layer", "owl"),
                   help="BESA: learned per row or per layer (default row); wanda/sparsegpt/magnitude: owl (OWL's "
                        "per-block sparsity from outlier ratios, --set owl_m=5 --set owl_lambda=0.08)")
    g.add_argument("--importance", choices=("wanda", "magnitude", "sparsegpt"), help="BESA weight ranking")
    g.add_argument("--reconstruct", action="store_true", default=None,
                   help="BESA: rebuild kept weights with SparseGPT's OBS update after learning the allocation")
    g.add_argument("--nm", help="N:M pattern, e.g. 2:4 (keep N of every M)")
    g.add_argument("--profile", help="per-layer sparsity JSON {module_path: sparsity} or a run manifest.json")
    g.add_argument("--calib", default="pydoc",
                   help="pydoc | FILE | wikitext2 | c4 (default pydoc): the calibration text (the train split of "
                        "wikitext2)")
    g.add_argument("--calib-part", choices=("auto", "all", "first"), default="auto",
                   help="what calibration samples of pydoc or FILE: all of it, or the first 75%% (the rest held "
                        "out for evaluation); auto (default): first for pydoc and for a text that evaluation also "
                        "reads, all otherwise")
    g.add_argument("--nsamples", type=int, default=nsamples, help=f"calibration segments (default {nsamples})")
    g.add_argument("--seqlen", type=int, default=seqlen, help=f"tokens per segment (default {seqlen})")
    g.add_argument("--epochs", type=int, help="BESA epochs (default 1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--save-model", action="store_true",
                   help="also save the pruned model (safetensors; with --wbits in compressed-tensors pack-quantized "
                        "format)")
    t = p.add_argument_group("hardware target (BESA: allocate for a simulated speedup instead of a sparsity)")
    t.add_argument("--target-speedup", type=float, metavar="X",
                   help="BESA learns the sparsity per row/layer and the format per layer so that the whole step "
                        "simulates X times faster than dense on --target-hw (replaces --sparsity)")
    t.add_argument("--target-hw", metavar="PRESET|FILE.toml",
                   help="hardware of the target (default: besa-64x64; for run: --hw with its --set)")
    t.add_argument("--target-phase", choices=("decode", "prefill"), default="decode",
                   help="phase of the target (default decode)")
    t.add_argument("--target-tokens", type=int, help="decode: batch (default 1); prefill: prompt length (default 2048)")
    t.add_argument("--target-context", type=int, help="decode: cached tokens (default 2048)")
    q = p.add_argument_group("quantization (weight-only, asymmetric, per group of inputs)")
    q.add_argument("--wbits", type=int, choices=(2, 3, 4, 8), help="quantize every pruned Linear to B bits")
    q.add_argument("--group-size", type=int, help="inputs per quantization group, -1 = per output channel (default 64)")
    q.add_argument("--quantizer", choices=("rtn", "lwc", "obs"),
                   help="rtn: min-max; lwc: learnable clipping (joint with the allocation for besa); obs: GPTQ-style "
                        "inside SparseGPT's OBS loop (default: lwc for besa, obs for sparsegpt, rtn otherwise)")


def _preset(name: str | None) -> dict:
    if name is None:
        return {}
    from simulator.config import read_document

    path = Path(name)
    if not path.exists():
        path = PRESET_DIR / f"{name.removesuffix('.toml')}.toml"
        if not path.is_file():
            raise FileNotFoundError(f"preset not found: {name}")
    fields = read_document(path, "preset", fmt="toml").get("prune", {})
    if not isinstance(fields, dict):
        raise ValueError(f"preset {path}: 'prune' must be a [prune] table of PruneConfig fields")
    unknown = sorted(set(fields) - _settable_fields())
    if unknown:
        raise ValueError(f"preset {path}: unknown field {unknown[0]!r}; valid: {', '.join(sorted(_settable_fields()))}")
    return dict(fields)


def _settable_fields() -> set[str]:
    """PruneConfig fields a preset or --set may give (method, seed and profile have their own flags)."""
    import dataclasses

    from pruning.config import PruneConfig

    return {f.name for f in dataclasses.fields(PruneConfig)} - {"method", "seed", "profile"}


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` pairs checked against PruneConfig fields; values parsed as JSON when they can be."""
    import json

    names = _settable_fields()
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(names))}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    if isinstance(out.get("nm"), str):
        from pruning.config import parse_nm
        out["nm"] = parse_nm(out["nm"])
    return out


def build_configs(args: argparse.Namespace):
    """(PruneConfig, CalibConfig) from preset + flags; raises ValueError on bad input."""
    from pruning.config import CalibConfig, PruneConfig, parse_nm
    from pruning.masks import load_profile

    fields = _preset(args.preset)
    owl = args.allocation == "owl"
    if owl and args.method == "besa":
        raise ValueError("--allocation owl applies to wanda, sparsegpt and magnitude; BESA learns its own")
    if args.allocation in ("row", "layer") and args.method != "besa":
        raise ValueError(f"--allocation {args.allocation} applies to besa; {args.method} takes --allocation owl")
    flags = {"sparsity": args.sparsity, "besa_allocation": None if owl else args.allocation,
             "besa_importance": args.importance,
             "besa_reconstruct": args.reconstruct, "besa_epochs": args.epochs, "wbits": args.wbits,
             "group_size": args.group_size, "quantizer": args.quantizer}
    fields.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(fields.get("nm"), str):
        fields["nm"] = parse_nm(fields["nm"])
    nm = parse_nm(args.nm)
    if nm is not None:
        fields["nm"] = nm
        fields.setdefault("sparsity", 1 - nm[0] / nm[1])
    if args.profile:
        fields["profile"] = load_profile(args.profile)
    if owl:
        fields.setdefault("owl_m", 5.0)
    fields.update(parse_overrides(split_settings(getattr(args, "prune_set", None) or [], prune=True, hw=False)[0]))
    if args.target_speedup is not None:
        if args.sparsity is not None:
            raise ValueError("--sparsity and --target-speedup both set the sparsity; give one")
        fields["hw_target"] = latency_target(args)
    try:
        cfg = PruneConfig(method=args.method, seed=args.seed, **fields)
    except TypeError as exc:
        raise ValueError(f"bad preset field: {exc}") from exc
    from pruning.calibration import calibration_part

    calibration_part(args.calib, args.calib_part)  # --calib-part given for a hub dataset fails here
    return cfg, CalibConfig(args.calib, args.nsamples, args.seqlen, args.seed, args.calib_part)


def latency_target(args: argparse.Namespace):
    """The LatencyModel of --target-speedup: the simulator's latency table of the model on the target
    hardware and phase (cached in runs/.cache/latency)."""
    from besa_hw.pipeline import latency_model, model_shape, table_spec
    from simulator.config import load_hardware, parse_overrides as hw_overrides

    if args.method not in ("besa", "search"):
        raise ValueError(f"--target-speedup applies to --method besa or search, not {args.method}")
    if args.target_hw is not None or not hasattr(args, "hw"):
        hw = load_hardware(args.target_hw or "besa-64x64")
    else:  # run: the hardware it simulates
        hw = load_hardware(args.hw, hw_overrides(args.overrides))
    spec = table_spec(model_shape(args.model), args.target_phase, args.target_tokens, args.target_context)
    return latency_model(spec, hw, args.target_speedup)


def split_settings(items: list[str], prune: bool, hw: bool) -> tuple[list[str], list[str]]:
    """``--set`` items as (PruneConfig items, HardwareConfig items): ``prune.FIELD=V`` and ``hw.FIELD=V``
    name their section; an unsectioned ``FIELD=V`` goes where FIELD is a field (ValueError when it is
    a field of both, of neither, or of a section the command does not take)."""
    import dataclasses

    from simulator.config import HardwareConfig

    hw_fields = {f.name for f in dataclasses.fields(HardwareConfig)} if hw else set()
    prune_fields = _settable_fields() if prune else set()  # (importing PruneConfig brings torch)
    out: dict[str, list[str]] = {"prune": [], "hw": []}
    allowed = [name for name, ok in (("prune", prune), ("hw", hw)) if ok]
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not dot:
            field = key
            section = ("prune" if field in prune_fields else "") + ("hw" if field in hw_fields else "")
            if section == "prunehw":
                raise ValueError(f"--set {item!r}: {field} is a pruning and a hardware field; write prune.{field} "
                                 f"or hw.{field}")
            if not section and len(allowed) == 2:
                raise ValueError(f"--set {item!r}: {field} is neither a pruning field nor a hardware field")
            if not section:
                section = allowed[0]  # that section's parser names the valid fields
        if section not in ("prune", "hw") or not sep:
            raise ValueError(f"--set {item!r}: expected [prune.|hw.]FIELD=VALUE")
        if section not in allowed:
            raise ValueError(f"--set {item!r}: this command takes no {section} settings")
        out[section].append(f"{field}={value}")
    return out["prune"], out["hw"]
