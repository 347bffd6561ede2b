"""`besa-hw eval --tasks`: zero-shot accuracy through lm-eval, offline, on tiny multiple-choice tasks
written here (JSONL + task YAML), checked against our own log-likelihood loop over the same model."""

import json
import math
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from besa_hw import tasks as tasks_mod
from besa_hw.cli import main
from besa_hw.tasks import TaskConfig, evaluate_tasks, load_tasks

from conftest import write_fake_run

lm_eval = pytest.importorskip("lm_eval", reason="the optional extra besa-hw[tasks]")

# The right choice repeats the context's last word, so a model that copies would score 1.
DOCS = [{"query": f"{w} {w} {w}", "choices": [w, *others][:n], "gold": 0}
        for w, others, n in [("red", ["blue", "green"], 3), ("cat", ["dog"], 2), ("sun", ["moon", "star"], 3),
                             ("one", ["two", "three"], 2), ("tea", ["milk", "coffee"], 3), ("up", ["down"], 2),
                             ("hot", ["cold", "warm"], 3), ("yes", ["no"], 2)]]
for i, doc in enumerate(DOCS):  # move the right answer around: gold = 0, 1, 2, 0, 1, ...
    gold = i % len(doc["choices"])
    doc["choices"].insert(gold, doc["choices"].pop(0))
    doc["gold"] = gold
TIE_GOLD = [0, 1, 0, 2, 1, 0, 1, 1]  # every choice is the same text: lm-eval's argmax picks choice 0

YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def write_task(folder: Path, name: str, docs: list[dict]) -> Path:
    """A JSONL of ``docs`` and the task YAML reading it by a path relative to the YAML's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    path = folder / f"{name}.yaml"
    path.write_text(YAML.format(name=name, data=f"{name}.jsonl"))
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    write_task(folder, "tiny_mc", DOCS)
    write_task(folder, "tiny_tie", [{"query": f"q{i}", "choices": ["same"] * 3, "gold": g}
                                    for i, g in enumerate(TIE_GOLD)])
    (folder / "_template.yaml").write_text("output_type: multiple_choice\n")  # no task: skipped in a folder
    return folder


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """Run from an unrelated folder: the YAMLs' relative data paths must not depend on it."""
    monkeypatch.chdir(tmp_path)


def own_accuracy(lm, tok, docs: list[dict]) -> tuple[float, float]:
    """(acc, acc_norm) by hand: sum of log p(choice tokens | query) for " choice" after the query;
    acc_norm divides by the choice's length in characters."""
    right = right_norm = 0
    for doc in docs:
        ctx = tok(doc["query"]).input_ids
        lls = []
        for choice in doc["choices"]:
            cont = tok(" " + choice).input_ids
            with torch.no_grad():
                logp = lm(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]  # (seq, vocab)
            lls.append(sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont)))
        right += max(range(len(lls)), key=lls.__getitem__) == doc["gold"]
        norm = [ll / len(c) for ll, c in zip(lls, doc["choices"])]
        right_norm += max(range(len(norm)), key=norm.__getitem__) == doc["gold"]
    return right / len(docs), right_norm / len(docs)


def stderr(acc: float, n: int) -> float:
    """Standard error of a mean of n 0/1 outcomes (sample standard deviation / sqrt(n))."""
    return math.sqrt(acc * (1 - acc) / (n - 1))


def test_accuracy_equals_own_loglikelihood_loop(task_dir, tiny_model, byte_tokenizer):
    cfg = TaskConfig((str(task_dir) + "/",))
    loaded = load_tasks(cfg)
    assert sorted(loaded.tasks) == ["tiny_mc", "tiny_tie"]
    res = evaluate_tasks(tiny_model, byte_tokenizer, loaded, cfg)
    acc, acc_norm = own_accuracy(tiny_model, byte_tokenizer, DOCS)
    mc = res["tiny_mc"]
    assert (mc["acc"], mc["acc_norm"]) == (acc, acc_norm)
    assert mc["acc_stderr"] == pytest.approx(stderr(acc, 8)) and mc["acc_norm_stderr"] == pytest.approx(
        stderr(acc_norm, 8))
    assert mc["n"] == 8 and mc["num_fewshot"] == 0 and mc["limit"] is None
    assert mc["source"] == str(task_dir / "tiny_mc.yaml") and mc["lm_eval"] == version("lm_eval")
    # Equal log-likelihoods: the first choice wins, so acc is the share of documents whose answer is 0.
    assert res["tiny_tie"]["acc"] == res["tiny_tie"]["acc_norm"] == TIE_GOLD.count(0) / 8


def test_eval_model_prints_the_table(task_dir, tiny_model_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", str(task_dir / "tiny_tie.yaml")]) == 0
    out = capsys.readouterr().out
    assert "zero-shot tasks (0-shot)" in out and f"| tiny_tie | {3 / 8:.3f} |" in out


def test_eval_run_records_manifest_and_report(task_dir, tiny_model_dir, tmp_path, capsys):
    """A pruned run (random masks on the tiny model): pruned and dense accuracy go into the manifest,
    and the run's report, rebuilt, shows them; a later task is added beside the first."""
    from besa_hw.runfolder import load_run_model
    from besa_hw.models import load_model
    from besa_hw.report import build_report
    from besa_hw.pipeline import simulate_run
    from simulator import load_hardware

    run = write_fake_run(tmp_path / "run", 0.5)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model"]["id"] = str(tiny_model_dir)
    (run / "manifest.json").write_text(json.dumps(manifest))
    simulate_run(run, load_hardware(), {"decode": 1})
    build_report(run)
    assert main(["eval", "--run", str(run), "--tasks", str(task_dir / "tiny_mc.yaml"), "--limit", "6",
                 "--dense", "--batch-size", "2"]) == 0
    recorded = json.loads((run / "manifest.json").read_text())["tasks"]["tiny_mc"]
    lm, tok, _ = load_run_model(run)
    base, _, _ = load_model(str(tiny_model_dir))
    assert (recorded["acc"], recorded["acc_norm"]) == own_accuracy(lm, tok, DOCS[:6])
    assert (recorded["dense"]["acc"], recorded["dense"]["acc_norm"]) == own_accuracy(base, tok, DOCS[:6])
    assert 0 <= recorded["acc"] <= 1 and recorded["acc_stderr"] == pytest.approx(stderr(recorded["acc"], 6))
    assert recorded["n"] == 6 and recorded["limit"] == 6 and recorded["num_fewshot"] == 0
    md = (run / "report" / "report.md").read_text()
    assert "### Zero-shot tasks" in md and f"| tiny_mc | {recorded['acc']:.3f} |" in md
    assert "at most 6 per task" in md and "report:" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--tasks", str(task_dir / "tiny_tie.yaml")]) == 0
    tasks = json.loads((run / "manifest.json").read_text())["tasks"]
    assert sorted(tasks) == ["tiny_mc", "tiny_tie"] and tasks["tiny_mc"] == recorded
    md = (run / "report" / "report.md").read_text()
    mean = (tasks["tiny_mc"]["acc"] + tasks["tiny_tie"]["acc"]) / 2
    assert "| tiny_tie |" in md and f"Mean over the 2 tasks: acc {mean:.3f}, acc_norm " in md


@pytest.fixture
def small_index(tmp_path, monkeypatch):
    """lm-eval's own piqa task as the only standard task (indexing all ~15k takes seconds), hub offline."""
    import datasets.config
    import huggingface_hub.constants
    from lm_eval.tasks import TaskManager

    folder = tmp_path / "index"
    shutil.copytree(Path(lm_eval.__file__).parent / "tasks" / "piqa", folder)
    monkeypatch.setattr(tasks_mod, "_manager", lambda include_defaults: TaskManager(include_path=str(folder),
                                                                                   include_defaults=False))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("besa-hw")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("tasks,extra,needles", [
    ("piqx", (), ("unknown task 'piqx'", "did you mean piqa")),
    ("piqa", (), ("task piqa: its dataset could not be loaded", "needs the network", "local task YAML")),
    ("nope/tiny.yaml", (), ("task YAML nope/tiny.yaml not found",)),
    ("{tmp}/", (), ("holds no .yaml task file",)),
    ("{tasks}/_template.yaml", (), ("defines no 'task'",)),
    ("{broken}", (), ("task tiny_mc: data file tiny_mc.jsonl not found", "--task-data DIR")),
    ("{tasks}/tiny_mc.yaml", ("--limit", "0"), ("--limit must be >= 1",)),
    ("{tasks}/tiny_mc.yaml", ("--num-fewshot", "-1"), ("--num-fewshot must be >= 0",)),
    (None, (), ("nothing to evaluate", "--tasks")),
])
def test_bad_tasks_are_one_line_errors(tasks, extra, needles, task_dir, tiny_model_dir, tmp_path, small_index,
                                       capsys):
    broken = tmp_path / "broken"
    write_task(broken, "tiny_mc", DOCS)
    (broken / "tiny_mc.jsonl").unlink()
    argv = ["eval", "--model", str(tiny_model_dir), *extra]
    if tasks:
        empty = tmp_path / "empty"
        empty.mkdir()
        argv += ["--tasks", tasks.format(tmp=empty, tasks=task_dir, broken=broken / "tiny_mc.yaml")]
    assert main(argv) == 2
    line = _error(capsys)
    assert line.startswith("besa-hw eval: error: ")
    for needle in needles:
        assert needle in line, line


def test_lm_eval_missing_says_how_to_install(task_dir, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval raises ImportError
    assert main(["eval", "--model", str(tiny_model_dir), "--tasks", str(task_dir / "tiny_mc.yaml")]) == 2
    assert "pip install 'besa-hw[tasks]'" in _error(capsys)


def test_committed_example_task_reads_offline():
    """configs/tasks/ (the README's offline example) loads from any working directory."""
    root = Path(__file__).resolve().parents[2]
    loaded = load_tasks(TaskConfig((str(root / "configs" / "tasks") + "/",)))
    assert list(loaded.tasks) == ["everyday_mc"]
    docs = list(loaded.tasks["everyday_mc"].test_docs())
    assert len(docs) == 16 and all(0 <= d["answer"] < len(d["choices"]) for d in docs)
