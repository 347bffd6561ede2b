"""Cycle-approximate SimPy model of a ViTCoD-style sparse accelerator (torch-free)."""

from simulator.config import HardwareConfig, apply_overrides, available_presets, load_hardware
from simulator.simulate import LAYER_COLUMNS, OpResult, Simulator, results_frame, step_metrics, summarize
from simulator.workload import SHAPES, LayerOp, ModelShape, get_shape, model_ops, run_ops

__all__ = [
    "HardwareConfig", "load_hardware", "apply_overrides", "available_presets",
    "Simulator", "OpResult", "LAYER_COLUMNS", "results_frame", "summarize", "step_metrics",
    "LayerOp", "ModelShape", "SHAPES", "get_shape", "model_ops", "run_ops",
]
