"""Zero-shot downstream accuracy through lm-evaluation-harness (the extra ``pip install 'besa-hw[tasks]'``).

BESA (Xu et al., ICLR 2024) reports, beside perplexity, zero-shot accuracy on PIQA, BoolQ,
HellaSwag, WinoGrande, ARC-e and ARC-c measured with lm-eval. Here the model is wrapped in memory
(``HFLM(pretrained=model, tokenizer=...)``), so a run's masked model is evaluated without saving it.

A task is given as a standard lm-eval name (its dataset is downloaded from the Hugging Face Hub
once, then cached), as a local task YAML, or as a folder of them. A local YAML can read JSONL data
offline (``dataset_path: json``, ``dataset_kwargs: {data_files: ...}``); relative data paths are
resolved against the YAML's folder (lm-eval itself resolves them against the working directory).
Every dataset is loaded before the model, so an unknown task or an unreachable dataset fails fast.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import glob
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["PAPER_TASKS", "TaskConfig", "LoadedTasks", "lm_eval_version", "load_tasks", "evaluate_tasks",
           "record_tasks", "tasks_table", "tasks_mean"]

PAPER_TASKS = ("piqa", "boolq", "hellaswag", "winogrande", "arc_easy", "arc_challenge")
# Task YAMLs shipped with besa-hw that read local JSONL files (configs/tasks/paper/), and named sets of them:
# "paper" is BESA's zero-shot table without HellaSwag (no local file of it), "local" all seven.
LOCAL_TASK_DIR = Path(__file__).resolve().parents[1] / "configs" / "tasks" / "paper"
TASK_SETS = {"paper": ("piqa", "boolq", "winogrande", "arc_easy", "arc_challenge"),
             "local": ("piqa", "boolq", "winogrande", "arc_easy", "arc_challenge", "openbookqa", "lambada_openai")}
DATA_ENV = "BESA_HW_TASK_DATA"  # where the local task files are, when --task-data is not given
INSTALL_HINT = "pip install 'besa-hw[tasks]'"
MIN_LM_EVAL = "0.4.12"  # as in pyproject.toml's extra
NETWORK_HINT = ("standard tasks download their data from the Hugging Face Hub, which needs the network once "
                "(then the datasets cache); offline, use a local task YAML with JSONL data (see configs/tasks/)")
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # datasets' builders that read local files
SHOWN = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")


@dataclass(frozen=True)
class TaskConfig:
    """What to evaluate: ``tasks`` (lm-eval names, YAML files, folders given with a slash), shots,
    at most ``limit`` documents per task (None: all), and the lm-eval batch size."""

    tasks: tuple[str, ...]
    num_fewshot: int = 0
    limit: int | None = None  # lm-eval's meaning: the first N documents
    batch_size: int = 1
    data_dir: str | None = None  # folder of the local task files (None: $BESA_HW_TASK_DATA, else beside the YAML)
    subset: int | None = None  # a seeded random subset of at most N documents per task (benchmarks)
    subset_seed: int = 0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("--tasks names no task")
        if self.limit is not None and self.subset is not None:
            raise ValueError("--limit (the first N documents) and --subset (N seeded random ones): give one")
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"--subset must be >= 1 (documents per task), got {self.subset}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"task data folder not found: {self.data_dir}")
        if self.num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1 (documents per task), got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")

    @classmethod
    def parse(cls, tasks: str, **kwargs) -> "TaskConfig":
        """From the comma-separated ``--tasks`` text; a set name (paper, local) or a shipped local task's
        name with ``local:`` (local:piqa) stands for the shipped YAMLs."""
        items = []
        for t in (t.strip() for t in tasks.split(",") if t.strip()):
            if t in TASK_SETS:
                items += [str(LOCAL_TASK_DIR / f"{n}.yaml") for n in TASK_SETS[t]]
            elif t.startswith("local:"):
                name = t.removeprefix("local:")
                if name not in TASK_SETS["local"]:
                    raise ValueError(f"no shipped local task {name!r}; choose from {', '.join(TASK_SETS['local'])}")
                items.append(str(LOCAL_TASK_DIR / f"{name}.yaml"))
            else:
                items.append(t)
        return cls(tuple(items), **kwargs)

    @property
    def data_folder(self) -> Path | None:
        import os

        folder = self.data_dir or os.environ.get(DATA_ENV)
        return Path(folder) if folder else None


@dataclass
class LoadedTasks:
    """lm-eval Task objects with their datasets loaded, keyed by task name, and where each came from."""

    tasks: dict[str, object]
    sources: dict[str, str]  # task name -> "lm-eval" or the YAML file
    manager: object = field(repr=False)  # the lm-eval TaskManager


def lm_eval_version() -> str:
    """The installed lm-eval version; ValueError saying how to install it when it is absent or older
    than 0.4.12 (whose TaskManager.load and YAML reader this module uses)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        import lm_eval  # noqa: F401

        found = version("lm_eval")
    except (ImportError, PackageNotFoundError):
        raise ValueError(f"zero-shot tasks need lm-eval, which is not installed: {INSTALL_HINT}") from None
    if _release(found) < _release(MIN_LM_EVAL):
        raise ValueError(f"zero-shot tasks need lm-eval >= {MIN_LM_EVAL}, found {found}: pip install -U "
                         "'besa-hw[tasks]'")
    return found


def _release(text: str) -> tuple[int, ...]:
    """(0, 4, 13) of "0.4.13" (or of "0.4.13.dev0")."""
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _split(items: tuple[str, ...]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """([(local YAML file, named explicitly)], standard names). An item with a slash or a .yaml/.yml
    ending is a path: a YAML file or a folder of them."""
    yamls, names = [], []
    for item in items:
        path = Path(item).expanduser()
        if not ("/" in item or item.endswith((".yaml", ".yml"))):
            names.append(item)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise FileNotFoundError(f"task folder {item} holds no .yaml task file")
            yamls += [(p, False) for p in found]
        elif path.is_file():
            yamls.append((path, True))
        else:
            raise FileNotFoundError(f"task YAML {item} not found")
    return yamls, names


@functools.lru_cache(maxsize=2)
def _manager(include_defaults: bool):
    """lm-eval's TaskManager; indexing its ~15k built-in task YAMLs takes seconds, so only when needed."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=include_defaults)


def load_tasks(cfg: TaskConfig) -> LoadedTasks:
    """Resolve ``cfg.tasks`` and load every dataset (downloads for standard names).

    ValueError/FileNotFoundError, naming the task, for lm-eval missing, an unknown name, a missing or
    invalid YAML, or a dataset that cannot be loaded (offline, a standard task's download).
    """
    yamls, names = _split(cfg.tasks)
    version = lm_eval_version()
    manager = _manager(bool(names))
    tasks, sources = {}, {}
    for name in names:
        for task_name in _match(manager, name, version):
            built = _build(manager, task_name, f"task {task_name}", hub=True)
            tasks.update(built)
            sources.update(dict.fromkeys(built, "lm-eval"))
    for path, explicit in yamls:
        config = _read_yaml(path, explicit, cfg.data_folder)
        if config is None:
            continue
        hub = config.get("dataset_path") not in LOCAL_BUILDERS
        built = _build(manager, config, f"task {config['task']} ({path})", hub=hub)
        tasks.update(built)
        sources.update(dict.fromkeys(built, str(path)))
    if not tasks:
        raise ValueError(f"no task in {', '.join(cfg.tasks)}: no YAML there defines a 'task'")
    return LoadedTasks(tasks, sources, manager)


def _match(manager, name: str, version: str) -> list[str]:
    """The lm-eval task names ``name`` stands for (a task, group, tag or glob pattern)."""
    matched = manager.match_tasks([name])
    if not matched:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}: not an lm-eval {version} task{hint} "
                         "(a local task: give the path of its YAML)")
    return matched


def _read_yaml(path: Path, explicit: bool, data_folder: Path | None = None) -> dict | None:
    """A local task YAML's config with its relative data paths resolved against ``data_folder`` (the
    user's --task-data) or else the YAML's folder; a data file found in neither is refused, naming it.
    A YAML of a folder without a ``task`` key (a template or group) is skipped (None); one named
    explicitly is refused."""
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's own reader: include and !function resolved

    try:
        config = load_yaml(path, resolve_func=True)
    except (yaml.YAMLError, OSError, ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"task YAML {path}: cannot be read ({(str(exc).splitlines() or [''])[0]})") from exc
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        if explicit:
            raise ValueError(f"task YAML {path} defines no 'task' (groups of local tasks are not supported: "
                             "list the task YAMLs or their folder)")
        logger.debug("%s defines no 'task'; skipped", path)
        return None
    kwargs = config.get("dataset_kwargs") or {}
    for key in ("data_files", "data_dir"):
        if key in kwargs:
            kwargs[key] = _resolve(kwargs[key], data_folder or path.parent)
    if config.get("dataset_path") in LOCAL_BUILDERS:
        _check_data_files(kwargs.get("data_files"), config["task"], data_folder)
    return config


def _check_data_files(value, task: str, data_folder: Path | None) -> None:
    """FileNotFoundError naming the first data file of a local task that does not exist."""
    files = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for f in files:
        if isinstance(f, str) and not glob.glob(f):
            where = (f"in the task data folder {data_folder}" if data_folder else
                     f"(give the folder of the task files with --task-data DIR or {DATA_ENV})")
            raise FileNotFoundError(f"task {task}: data file {Path(f).name} not found {where}")


def _resolve(value, folder: Path):
    """Relative paths (str, list or dict of them) that exist under ``folder``, made absolute there."""
    if isinstance(value, dict):
        return {k: _resolve(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, folder) for v in value]
    if isinstance(value, str) and not Path(value).is_absolute() and glob.glob(str(folder / value)):
        return str(folder / value)
    return value


def _build(manager, spec: str | dict, label: str, hub: bool) -> dict[str, object]:
    """{task name: Task} of one spec (a name or a YAML's config); its dataset is loaded here."""
    try:
        return dict(manager.load([spec])["tasks"])
    except Exception as exc:  # datasets and the hub raise many kinds: ConnectionError, DatasetNotFoundError, ...
        reason = (str(exc).splitlines() or [""])[0]
        raise ValueError(f"{label}: its dataset could not be loaded ({type(exc).__name__}: {reason})"
                         + (f"; {NETWORK_HINT}" if hub else "")) from exc


def evaluate_tasks(lm, tokenizer, loaded: LoadedTasks, cfg: TaskConfig) -> dict[str, dict]:
    """Accuracy of an in-memory model on the loaded tasks, one flat dict per task: every metric of
    lm-eval's default filter (acc, acc_stderr, acc_norm, acc_norm_stderr, ...), the number of
    documents n, num_fewshot, limit, source and the lm-eval version."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    import time

    device = str(next(lm.parameters()).device)
    model = HFLM(pretrained=lm, tokenizer=tokenizer, batch_size=cfg.batch_size, device=device)
    version = lm_eval_version()
    rows = {}
    for name, task in loaded.tasks.items():  # one task at a time: its own progress line and time
        samples = None if cfg.subset is None else {name: subset_indices(task, cfg.subset, cfg.subset_seed)}
        start = time.perf_counter()
        with _quiet_git():
            out = simple_evaluate(model=model, tasks=[task], num_fewshot=cfg.num_fewshot, limit=cfg.limit,
                                  samples=samples, task_manager=loaded.manager, log_samples=False)
        seconds = time.perf_counter() - start
        for got, metrics in out["results"].items():
            if got not in loaded.sources:  # a group's aggregate row
                continue
            n = (out.get("n-samples") or {}).get(got, {}).get("effective")
            rows[got] = {**_metrics(metrics), "n": n, "num_fewshot": out["n-shot"].get(got), "limit": cfg.limit,
                         "subset": None if cfg.subset is None else f"{cfg.subset} (seed {cfg.subset_seed})",
                         "seconds": round(seconds, 1), "source": loaded.sources[got], "lm_eval": version}
            logger.info("%s: %s documents in %.0f s (%.1f documents/s)", got, n, seconds, (n or 0) / seconds)
    return rows


@contextlib.contextmanager
def _quiet_git():
    """lm-eval records ``git describe`` of the working directory and lets git print "fatal: not a git
    repository" from anywhere else; run it from besa-hw's own checkout when there is one (the commit
    the manifest records too)."""
    import os

    from besa_hw.provenance import SOURCE_DIR

    here = os.getcwd()
    inside = (Path(SOURCE_DIR) / ".git").exists()
    if inside:
        os.chdir(SOURCE_DIR)
    try:
        yield
    finally:
        os.chdir(here)


def subset_indices(task, size: int, seed: int) -> list[int]:
    """A seeded random subset of at most ``size`` of ``task``'s evaluation documents (all when fewer),
    in ascending order."""
    import random

    n = len(task.eval_docs)
    return sorted(random.Random(seed).sample(range(n), size)) if size < n else list(range(n))


def _metrics(results: dict) -> dict[str, float | None]:
    """lm-eval's ``"acc,none": 0.5`` as ``"acc": 0.5`` (other filters keep theirs); an "N/A"
    standard error as None."""
    row = {}
    for key, value in results.items():
        metric, _, filt = key.partition(",")
        if not filt:
            continue  # name, alias, sample_len
        name = metric if filt == "none" else key
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[name] = float(value)
        elif metric.endswith("_stderr"):
            row[name] = None
    return row


def record_tasks(run_dir: str | Path, pruned: dict[str, dict], dense: dict[str, dict] | None = None) -> dict:
    """Merge task results into the run's manifest under ``tasks`` (other tasks recorded earlier stay);
    ``dense``: the same tasks on the unpruned base model, kept under each task's ``dense`` key."""
    from pruning.export import read_manifest, update_manifest

    tasks = dict(read_manifest(run_dir).get("tasks") or {})
    for name, row in pruned.items():
        tasks[name] = dict(row)
        if dense and name in dense:
            tasks[name]["dense"] = {k: v for k, v in dense[name].items() if k in SHOWN}
    update_manifest(run_dir, {"tasks": tasks})
    return tasks


def tasks_table(tasks: dict[str, dict]) -> pd.DataFrame:
    """One row per task: acc and acc_norm with their standard errors, dense where evaluated, the
    number of documents n, shots, source (columns nothing fills are left out)."""
    rows = []
    for name, t in tasks.items():
        dense = t.get("dense") or {}
        source = t.get("source") or "lm-eval"
        rows.append({"task": name, **{k: t.get(k) for k in SHOWN}, "dense acc": dense.get("acc"),
                     "dense acc_norm": dense.get("acc_norm"), "n": t.get("n"), "shots": t.get("num_fewshot"),
                     "source": source if source == "lm-eval" else Path(source).name})
    df = pd.DataFrame(rows)
    return df[[c for c in df.columns if df[c].notna().any()]]


def tasks_mean(tasks: dict[str, dict]) -> str | None:
    """The mean accuracy over several tasks (BESA's "average" column), in words; None for one task."""
    if len(tasks) < 2:
        return None
    df = tasks_table(tasks)
    parts = [f"{c} {df[c].mean():.3f}" for c in ("acc", "acc_norm", "dense acc", "dense acc_norm")
             if c in df and df[c].notna().all()]
    return f"mean over the {len(tasks)} tasks: " + ", ".join(parts) if parts else None
