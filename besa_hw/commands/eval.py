"""``besa-hw eval``: perplexity of a run folder's pruned model, or of any model, on a text file, and
zero-shot accuracy on lm-eval tasks (``--tasks``, see besa_hw.tasks)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from besa_hw.options import add_eval_part_arg

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="perplexity and zero-shot accuracy of a pruned run or a model",
                              description="Perplexity over non-overlapping windows: exp(mean token NLL) (--data); "
                                          "zero-shot accuracy on lm-eval tasks (--tasks). With --run, the results "
                                          "go into the run's manifest (and its report, when it has one).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder written by `besa-hw prune` (its manifest gets the result)")
    src.add_argument("--model", help="HF folder, hub id, .gguf file or smollm2-135m")
    p.add_argument("--gguf-file", help="GGUF file name inside the --model folder")
    p.add_argument("--data",
                   help="evaluation text for perplexity: FILE | wikitext2 | c4 | pydoc (the test split of wikitext2, "
                        "a validation shard of c4); needed unless --tasks is given. Windows start at the beginning "
                        "of what --eval-part selects")
    add_eval_part_arg(p)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=40, help="bound on windows (CPU time); 0 = all")
    p.add_argument("--dense", action="store_true", help="with --run: also evaluate the unpruned model")
    p.add_argument("--device", default=None)
    t = p.add_argument_group("zero-shot tasks (lm-eval: pip install 'besa-hw[tasks]')")
    t.add_argument("--tasks", help="comma-separated: paper (BESA's zero-shot tasks without HellaSwag, from local "
                                   "files: piqa, boolq, winogrande, arc_easy, arc_challenge), local (those and "
                                   "openbookqa, lambada_openai), local:NAME, lm-eval task names (their datasets are "
                                   "downloaded once), local task YAML files, or folders of them given with a slash")
    t.add_argument("--num-fewshot", type=int, default=0, help="few-shot examples per prompt (default 0)")
    t.add_argument("--task-data", metavar="DIR",
                   help="folder of the local task files (e.g. the shared data's zero-shot/); default: "
                        "$BESA_HW_TASK_DATA")
    t.add_argument("--limit", type=int, default=None, help="the first N documents of each task (lm-eval's meaning)")
    t.add_argument("--subset", type=int, metavar="N", help="a seeded random subset of at most N documents per task")
    t.add_argument("--subset-seed", type=int, default=0, help="seed of --subset (default 0)")
    t.add_argument("--batch-size", type=int, default=1, help="lm-eval batch size (default 1)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import resolve_device, resolve_model
    from besa_hw.runfolder import check_run, saved_model_dir
    from besa_hw.tasks import TaskConfig, load_tasks
    from pruning.calibration import check_source

    if not args.data and not args.tasks:
        raise ValueError("nothing to evaluate: give --data (perplexity) and/or --tasks (zero-shot accuracy)")
    if args.seqlen < 2:
        raise ValueError(f"--seqlen must be >= 2, got {args.seqlen}")
    if args.max_windows < 0:
        raise ValueError(f"--max-windows must be >= 0 (0 = all), got {args.max_windows}")
    tasks = TaskConfig.parse(args.tasks, num_fewshot=args.num_fewshot, limit=args.limit,
                             batch_size=args.batch_size, data_dir=args.task_data, subset=args.subset,
                             subset_seed=args.subset_seed) if args.tasks else None
    if args.run:
        check_run(args.run)
        saved_model_dir(args.run)  # a run that cannot be reproduced fails before any download
    else:
        resolve_model(args.model, args.gguf_file)
    if args.data:
        check_source(args.data, "evaluation text")
    device = resolve_device(args.device)
    if tasks is not None:
        from besa_hw.evaluation import check_tasks_fit
        from besa_hw.runfolder import read_manifest

        spec = read_manifest(args.run)["model"] if args.run else {"id": args.model, "gguf_file": args.gguf_file}
        check_tasks_fit(spec["id"], spec.get("gguf_file"), device)
        if not args.verbose:  # lm-eval logs every request batch and the in-memory model at INFO/WARNING
            logging.getLogger("lm_eval").setLevel(logging.WARNING)
            logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)
        loaded = load_tasks(tasks)  # every dataset before the model: an unreachable one fails fast
    if args.data:
        _perplexity(args, device)
    if tasks is not None:
        _zero_shot(args, tasks, loaded, device)
    if args.run:
        _refresh_report(args.run)
    return 0


def _perplexity(args: argparse.Namespace, device: str) -> None:
    from besa_hw.models import check_context, load_model, resolve_model
    from besa_hw.evaluation import EvalConfig, evaluate_run
    from pruning.calibration import describe_split, evaluation_part, text_of, tokenize
    from pruning.eval import perplexity

    windows = args.max_windows or None
    if args.model:
        part = evaluation_part(args.data, args.eval_part)
        check_context(resolve_model(args.model, args.gguf_file), seqlen=args.seqlen)
        lm, tok, _ = load_model(args.model, args.gguf_file, device=device)
        check_context(lm, seqlen=args.seqlen)
        ids = tokenize(tok, text_of(args.data, "evaluation", part))
        ppl = perplexity(lm, ids, args.seqlen, windows, progress=True)
        print(f"evaluated on {args.data}: {describe_split(args.data, 'evaluation', part)['split']}")
        print(f"perplexity: {ppl:.4f}")
        return
    ppl = evaluate_run(args.run, EvalConfig(args.data, args.seqlen, windows, part=args.eval_part), device,
                       dense=args.dense, progress=True)
    print(f"evaluated on {args.data}: {ppl['split']}")
    if ppl["dense"] is not None:
        print(f"dense perplexity: {ppl['dense']:.4f}")
    print(f"perplexity: {ppl['pruned']:.4f}")


def _zero_shot(args: argparse.Namespace, cfg, loaded, device: str) -> None:
    from besa_hw.models import load_model
    from besa_hw.report.render import markdown_table
    from besa_hw.evaluation import evaluate_run_tasks
    from besa_hw.tasks import evaluate_tasks, tasks_mean, tasks_table

    if args.model:
        lm, tok, _ = load_model(args.model, args.gguf_file, device=device)
        results = evaluate_tasks(lm, tok, loaded, cfg)
    else:
        recorded = evaluate_run_tasks(args.run, loaded, cfg, device, dense=args.dense)
        results = {name: row for name, row in recorded.items() if name in loaded.tasks}
    print(f"zero-shot tasks ({cfg.num_fewshot}-shot" + (f", at most {cfg.limit} documents each" if cfg.limit else "")
          + "):")
    print(markdown_table(tasks_table(results)))
    if tasks_mean(results):
        print(tasks_mean(results))


def _refresh_report(run_dir: str) -> None:
    """Rebuild the run's report, when it has one, so that it shows the new results."""
    from besa_hw.report import build_report

    if (Path(run_dir) / "report" / "report.md").is_file():
        print(f"report: {build_report(run_dir, label=run_dir)}")
