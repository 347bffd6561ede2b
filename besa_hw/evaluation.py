"""Evaluation of models and run folders: perplexity (in memory, or block by block for a model in
a local safetensors folder, which is how any size is evaluated in the memory of one block) and
zero-shot tasks; results go into the run's manifest. No argparse here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["EvalConfig", "evaluate_run", "evaluate_run_tasks", "model_perplexity", "check_held_out",
           "record_perplexity"]


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


def model_perplexity(model: str, gguf_file: str | None, ids_of, ev: EvalConfig, device: str,
                     dtype: str = "float32", prepare=None, progress: bool = False) -> tuple[float, int]:
    """(perplexity, tokens) of a model (with ``prepare(i, block)`` applied to each block): block by block
    when it is a local safetensors folder, else loaded whole. ``ids_of(tokenizer)`` gives the token ids
    (so the text is tokenized by the model's own tokenizer, once)."""
    from besa_hw.models import check_context, load_model, resolve_model
    from pruning.eval import blockwise_perplexity, perplexity
    from pruning.streaming import LoadedModel, StreamedModel, is_streamable, parse_dtype

    spec = resolve_model(model, gguf_file)
    check_context(spec, seqlen=ev.seqlen)
    if spec.gguf_file is None and is_streamable(spec.source):
        from transformers import AutoTokenizer

        ids = ids_of(AutoTokenizer.from_pretrained(spec.source))
        src = StreamedModel(spec.source, device=device, dtype=parse_dtype(dtype))
        return blockwise_perplexity(src, ids, ev.seqlen, ev.max_windows, prepare, progress=progress), ids.numel()
    lm, tok, _ = load_model(model, gguf_file, device=device, dtype=dtype)
    check_context(lm, seqlen=ev.seqlen)
    ids = ids_of(tok)
    if prepare is None:
        return perplexity(lm, ids, ev.seqlen, ev.max_windows, progress=progress), ids.numel()
    ppl = blockwise_perplexity(LoadedModel(lm), ids, ev.seqlen, ev.max_windows, prepare, progress=progress)
    return ppl, ids.numel()


def evaluate_run(run_dir: str | Path, ev: EvalConfig, device: str, dense: bool = True,
                 progress: bool = False, dtype: str = "float32") -> dict:
    """Perplexity of a finished run (and of its dense base model); updates the manifest.

    The pruned model is the run's saved model, or the base model with the run's masks (and codes)
    applied block by block as each block is loaded: a base model in a local safetensors folder is
    never loaded whole.
    """
    from besa_hw.runfolder import block_preparer, check_run, saved_model_dir
    from pruning.calibration import evaluation_part, text_of, tokenize

    manifest = check_run(run_dir)  # also refuses a measurement run (prune --blocks)
    spec = manifest["model"]
    saved = saved_model_dir(run_dir)  # fail before any evaluation if the run cannot be reproduced
    part = evaluation_part(ev.data, ev.part, manifest.get("calibration"))
    check_held_out(manifest.get("calibration"), ev.data, part)
    text = text_of(ev.data, "evaluation", part)

    def ids_of(tok):
        return tokenize(tok, text)

    dense_ppl = None
    if dense:
        dense_ppl, _ = model_perplexity(spec["id"], spec.get("gguf_file"), ids_of, ev, device, dtype, progress=progress)
    if saved is not None:
        pruned, n_tokens = model_perplexity(str(saved), None, ids_of, ev, device, dtype, progress=progress)
    else:
        pruned, n_tokens = model_perplexity(spec["id"], spec.get("gguf_file"), ids_of, ev, device, dtype,
                                            prepare=block_preparer(run_dir, manifest), progress=progress)
    return record_perplexity(run_dir, ev, part, dense_ppl, pruned, n_tokens)


def check_tasks_fit(model: str, gguf_file: str | None, device: str) -> None:
    """Zero-shot tasks load the model whole (lm-eval calls it per request batch, which a block-by-block
    pass does not fit): refuse, with the memory it would need, a model whose fp32 weights exceed what
    ``device`` has free."""
    from besa_hw.estimate import GB, available_bytes, shape_of
    from besa_hw.models import resolve_model

    spec = resolve_model(model, gguf_file)
    try:
        shape = shape_of(spec.source if spec.gguf_file is None else spec.model_id)
    except ValueError:
        return
    if shape is None:
        return
    per_block = sum(o * i for o, i in shape.op_shapes().values())
    need = 4.0 * (per_block * shape.num_hidden_layers + 2 * shape.vocab_size * shape.hidden_size)
    free = available_bytes(device)
    if free is not None and need > free:
        raise ValueError(f"zero-shot tasks load the model whole: {model} needs about {need / GB:.1f} GB in fp32, "
                         f"{free / GB:.1f} GB free on {device}; evaluate its perplexity (block by block) instead")


def evaluate_run_tasks(run_dir: str | Path, loaded, cfg, device: str, dense: bool = False) -> dict:
    """Zero-shot accuracy of a finished run on ``loaded`` tasks (besa_hw.tasks), and of its dense base
    model when ``dense`` (loaded once, evaluated, then masked in place); updates the manifest."""
    from besa_hw.runfolder import load_run_model, read_finished_run, read_manifest, saved_model_dir
    from besa_hw.models import load_model
    from besa_hw.tasks import evaluate_tasks, record_tasks

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


