"""besa-hw: BESA pruning of LLaMA-family models + a cycle-approximate sparse-accelerator simulator.

Only this package imports both `pruning` (torch) and `simulator` (simpy/numpy).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
