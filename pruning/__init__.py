"""BESA / Wanda / SparseGPT / magnitude pruning of LLaMA-style decoders (torch only; no simulator).

Library entry points::

    ids = calibration.get_calibration(tokenizer, CalibConfig(...))
    result = prune_model(model, ids, PruneConfig(method="besa"), progress=True)
    export.write_run(out_dir, result, manifest_fields...)
"""

from pruning.config import CalibConfig, PruneConfig, parse_nm
from pruning.sequential import PruneResult, prune_model

__all__ = ["CalibConfig", "PruneConfig", "PruneResult", "parse_nm", "prune_model"]
