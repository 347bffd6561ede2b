"""The shipped local task YAMLs (configs/tasks/paper/) ask the model exactly what lm-eval's own registered
tasks ask: the same document, rendered through our YAML (from the local JSONL fields) and through the YAML
lm-eval installs (from the Hub dataset's fields, rebuilt from the local document), gives the same request
strings (context and continuation of every log-likelihood request)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BESA_HW_DATA", ROOT.parent / "shared" / "data")) / "zero-shot"
DOCS = 40  # documents compared per task
FILES = {"piqa": "piqa", "boolq": "boolq", "winogrande": "winogrande", "arc_easy": "arc_easy",
         "arc_challenge": "arc_challenge", "openbookqa": "openbook_qa", "lambada_openai": "lambada_openai"}
LM_EVAL_YAML = {"piqa": "piqa/piqa.yaml", "boolq": "super_glue/boolq/default.yaml",
                "winogrande": "winogrande/default.yaml", "arc_easy": "arc/arc_easy.yaml",
                "arc_challenge": "arc/arc_challenge.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
                "lambada_openai": "lambada/lambada_openai.yaml"}
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"zero-shot task files not found in {DATA}")


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def hub_doc(task: str, d: dict) -> dict:
    """The Hub dataset's document that the local (llm-foundry format) document was made from."""
    if task == "piqa":
        return {"goal": d["query"][len("Question: "):-1], "sol1": d["choices"][0], "sol2": d["choices"][1],
                "label": d["gold"]}
    if task == "boolq":
        cut = d["query"].rindex("\nQuestion: ")
        return {"passage": d["query"][len("Passage: "):cut], "question": d["query"][cut + 11:].removesuffix("?"),
                "label": d["gold"]}
    if task == "winogrande":
        a, b = d["context_options"]
        n = len(os.path.commonprefix([a, b]))
        return {"sentence": a[:n] + "_ " + d["continuation"], "option1": a[n:], "option2": b[n:],
                "answer": str(d["gold"] + 1)}
    if task in ("arc_easy", "arc_challenge", "openbookqa"):
        labels = _letters(len(d["choices"]))
        q = {"question": d["query"][len("Question: "):]} if task != "openbookqa" else {"question_stem": d["query"]}
        return {**q, "choices": {"text": d["choices"], "label": labels}, "answerKey": labels[d["gold"]]}
    return {"text": d["context"] + " " + d["continuation"]}


def _requests(task, doc: dict) -> list[tuple]:
    ctx = task.fewshot_context(doc, 0)
    made = task.construct_requests(doc, ctx)
    return [tuple(inst.arguments[:2]) for inst in (made if isinstance(made, list) else [made])]


def _lm_eval_task(name: str, docs: list[dict]):
    """lm-eval's registered task built from the YAML it installs, on the given documents (no download)."""
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(lm_eval.__file__).parent / "tasks" / LM_EVAL_YAML[name]
    config = load_yaml(path, resolve_func=True)
    config.pop("tag", None)

    class Offline(ConfigurableTask):
        def download(self, dataset_kwargs=None, **kwargs) -> None:  # noqa: ARG002
            self.dataset = datasets.DatasetDict({s: datasets.Dataset.from_list(docs)
                                                 for s in ("train", "validation", "test")})

    return Offline(config=config)


@pytest.mark.parametrize("name", list(FILES))
def test_local_task_asks_what_lm_eval_asks(name):
    from besa_hw.tasks import TaskConfig, load_tasks

    local = [json.loads(line) for line in (DATA / f"{FILES[name]}.jsonl").read_text().splitlines()[:DOCS]]
    ours = load_tasks(TaskConfig.parse(f"local:{name}", data_dir=str(DATA))).tasks[name]
    theirs = _lm_eval_task(name, [hub_doc(name, d) for d in local])
    assert ours.OUTPUT_TYPE == theirs.OUTPUT_TYPE
    assert [m["metric"] for m in ours.config.metric_list] == [m["metric"] for m in theirs.config.metric_list]
    for d, h in zip(local, (hub_doc(name, d) for d in local)):
        assert _requests(ours, d) == _requests(theirs, h)
        if ours.OUTPUT_TYPE == "multiple_choice":
            assert ours.doc_to_target(d) == theirs.doc_to_target(h) or ours.multiple_input


def test_missing_task_data_is_one_clear_error(tmp_path):
    from besa_hw.tasks import TaskConfig, load_tasks

    with pytest.raises(FileNotFoundError, match=r"task piqa: data file piqa\.jsonl not found in the task data folder"):
        load_tasks(TaskConfig.parse("local:piqa", data_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="task data folder not found"):
        TaskConfig.parse("paper", data_dir=str(tmp_path / "nope"))
    assert len(TaskConfig.parse("paper").tasks) == 5 and len(TaskConfig.parse("local").tasks) == 7
    with pytest.raises(ValueError, match="--limit .* and --subset"):
        TaskConfig.parse("paper", limit=5, subset=5)
