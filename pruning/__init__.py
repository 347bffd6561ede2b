"""BESA / Wanda / SparseGPT / magnitude pruning of LLaMA-style decoders, OWL allocation, and
hardware-targeted allocation from a latency table (torch only; never imports the simulator).

Library entry points (no argparse)::

    from pruning import CalibConfig, PruneConfig, get_calibration, prune_model, perplexity
    ids = get_calibration(tokenizer, CalibConfig("pydoc", nsamples=32, seqlen=512, seed=0))
    result = prune_model(model, ids, PruneConfig(method="besa", sparsity=0.5), progress=True)
    write_run("runs/x", result.masks, manifest)   # or besa_hw.runs.prune_to_run(...), which writes the manifest
"""

from pruning.calibration import get_calibration
from pruning.config import CalibConfig, PruneConfig, parse_nm
from pruning.eval import perplexity
from pruning.export import read_run, write_run
from pruning.sequential import PruneResult, prune_model

__all__ = ["CalibConfig", "PruneConfig", "PruneResult", "get_calibration", "parse_nm", "perplexity",
           "prune_model", "read_run", "write_run"]
