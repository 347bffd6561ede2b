"""The standard WikiText-2 protocol from the CLI on the real default model (issue 17 A).

Calibration on WikiText-2 validation, evaluation on the first windows of WikiText-2 test: the
protocol of SparseGPT, Wanda and the BESA paper, and of ``bench/prune_quality.py``. Needs the
shared data folder (``BESA_HW_DATA`` or ``../shared/data`` beside the checkout); skipped without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import pytest

from besa_hw.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BESA_HW_DATA", ROOT.parent / "shared" / "data"))
TEST = DATA / "wikitext-2-raw" / "wiki.test.raw"
VALID = DATA / "wikitext-2" / "wiki.valid.tokens"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (TEST.is_file() and VALID.is_file()), reason=f"WikiText-2 not found in {DATA}")]


def _printed_perplexity(capsys) -> float:
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("perplexity:")]
    return float(lines[-1].split()[-1])


def test_dense_wikitext2_test_perplexity_is_the_standard_one(capsys):
    """The dense SmolLM2-135M on the first 40 x 512 tokens of wiki.test.raw: 28.74 (the literature's
    protocol, and bench/prune_quality.py's dense row)."""
    assert main(["eval", "--model", "smollm2-135m", "--data", str(TEST), "--seqlen", "512",
                 "--max-windows", "40"]) == 0
    out_ppl = _printed_perplexity(capsys)
    assert abs(out_ppl - 28.74) <= 0.05, out_ppl


def test_cli_and_bench_give_the_same_perplexity_for_the_same_masks(tmp_path, capsys):
    """`prune` + `eval --run` from the CLI and bench/prune_quality.py's in-process protocol: one
    calibration sample set and one perplexity for the same method (8 windows to bound the time)."""
    import torch

    from besa_hw.models import load_model
    from pruning import CalibConfig
    from pruning.calibration import get_calibration, sample_segments, tokenize

    spec = importlib.util.spec_from_file_location("prune_quality", ROOT / "bench" / "prune_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # calibration: the CLI's `--calib FILE` samples the whole file, as the papers' loaders do
    _, tok, _ = load_model()
    by_hand = sample_segments(tokenize(tok, VALID.read_text()), 32, 512, 0)
    assert torch.equal(get_calibration(tok, CalibConfig(str(VALID), 32, 512, 0)), by_hand)
    # evaluation of the same masks (magnitude: no calibration, so one prune each way is cheap)
    run = tmp_path / "run"
    assert main(["prune", "--method", "magnitude", "--out", str(run)]) == 0
    assert main(["eval", "--run", str(run), "--data", str(TEST), "--seqlen", "512", "--max-windows", "8"]) == 0
    cli_ppl = _printed_perplexity(capsys)
    args = argparse.Namespace(threads=torch.get_num_threads(), data_dir=str(DATA), set=[], progress=False,
                              blocks=0, windows=8, sparsity=0.5, tune=False)
    bench_ppl = bench.run_one("magnitude", args)["ppl"]
    assert cli_ppl == pytest.approx(bench_ppl, rel=1e-4)
