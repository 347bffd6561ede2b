"""``besa-hw make-model``: a randomly initialised LLaMA checkpoint of a real model's shape, for measurements."""

from __future__ import annotations

import argparse
import dataclasses
import errno

from besa_hw.make_model import DTYPES, shape_names

SEED_LIMIT = 2**63  # the bound prune and run use (pruning.config.MAX_SEED), without importing torch here


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-model", help="write a randomly initialised LLaMA checkpoint of a real shape (e.g. llama-7b)",
        description="Write a randomly initialised LlamaForCausalLM checkpoint with the architecture and sizes of "
                    "a published model (fp16 sharded safetensors, config.json, the bundled SmolLM2 tokenizer), "
                    "tensor by tensor, so memory stays far below the model's size. For memory and time "
                    "measurements of pruning, not for quality: the decoder blocks (what pruning touches) have the "
                    "exact shapes; vocab_size, and so the embedding and lm_head rows, follow the tokenizer (49152).")
    p.add_argument("--shape", required=True, metavar="NAME", help=f"model shape: {', '.join(shape_names())}")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to create")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes; default 0)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float16", help="weight dtype (default float16)")
    p.add_argument("--layers", type=int, default=None, metavar="N",
                   help="decoder blocks to write (default: the shape's); fewer keeps a per-block measurement "
                        "(prune --blocks) quick to set up")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="a saved Hugging Face tokenizer folder to use instead of the bundled SmolLM2 one")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder written by besa-hw")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from besa_hw import make_model as mk
    from besa_hw.outdir import check_out_dir, staged_dir

    shape = mk.get_model_shape(args.shape)
    if not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed must be in [0, 2**63), got {args.seed}")
    if args.layers is not None:
        if not 1 <= args.layers <= shape.num_hidden_layers:
            raise ValueError(f"--layers must be in [1, {shape.num_hidden_layers}] for --shape {shape.name}, "
                             f"got {args.layers}")
        shape = dataclasses.replace(shape, num_hidden_layers=args.layers)
    check_out_dir(args.out, args.overwrite)
    tokenizer = mk.bundled_tokenizer() if args.tokenizer is None else mk.saved_tokenizer(args.tokenizer)
    config = mk.llama_config(shape, tokenizer, args.dtype)
    shards = mk.shard_plan(mk.tensor_plan(config), args.dtype)
    need = mk.checkpoint_bytes(shards, args.dtype)
    mk.check_disk(args.out, need + mk.TOKENIZER_BYTES, f"--shape {shape.name} ({args.dtype})")
    # Built beside --out and swapped in when complete: an interrupted write leaves nothing behind.
    try:
        with staged_dir(args.out, "model", overwrite=args.overwrite) as stage:
            meta = mk.write_checkpoint(stage, config, tokenizer, shards, seed=args.seed, progress=True)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:  # the disk filled up since the check (another writer)
            raise
        raise ValueError(f"--out {args.out}: the disk filled up while writing; nothing was kept") from exc
    print(f"wrote {args.out}: {shape.name} shape, {_count(meta['total_parameters'])} parameters "
          f"({config.num_hidden_layers} blocks, vocab {config.vocab_size} from the "
          f"{'bundled' if args.tokenizer is None else 'given'} tokenizer), "
          f"{_count(need)}B of {args.dtype} in {len(shards)} shard{'s' * (len(shards) > 1)}, seed {args.seed}")
    return 0


def _count(n: int) -> str:
    """6738415616 -> '6.74 G', 6365504 -> '6.37 M'."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)
