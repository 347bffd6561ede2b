"""LLaMA-style decoder structure: which Linears get pruned and how to find them.

Only the seven projections of each decoder block are pruned (as in SparseGPT,
Wanda and BESA); embeddings, norms and the LM head stay dense.
"""

from __future__ import annotations

from torch import nn

#: Pruned projections in model order, with the sub-module that holds each.
LINEAR_OPS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
OP_PARENT: dict[str, str] = {
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}
#: Projections that read the same input tensor as another one (so their statistics are shared).
SHARED_INPUT: dict[str, str] = {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"}


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Return ``model.model.layers`` after checking the model is a LLaMA-style decoder.

    Raises:
        ValueError: naming what is missing, when the model is not LLaMA-shaped.
    """
    name = type(model).__name__
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(f"unsupported architecture {name}: expected a LLaMA-style decoder with model.model.layers")
    for op in LINEAR_OPS:
        parent = getattr(layers[0], OP_PARENT[op], None)
        if not isinstance(getattr(parent, op, None), nn.Linear):
            raise ValueError(
                f"unsupported architecture {name}: decoder block has no {OP_PARENT[op]}.{op} Linear "
                "(need self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj)"
            )
    if getattr(inner, "embed_tokens", None) is None or getattr(inner, "rotary_emb", None) is None:
        raise ValueError(f"unsupported architecture {name}: expected model.model.embed_tokens and rotary_emb")
    return layers


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    """The seven prunable Linears of one decoder block, keyed by op name, in model order."""
    return {op: getattr(getattr(block, OP_PARENT[op]), op) for op in LINEAR_OPS}


def module_path(block_index: int, op: str) -> str:
    """Module path of a pruned Linear, e.g. ``model.layers.3.mlp.down_proj`` (the run-folder key)."""
    return f"model.layers.{block_index}.{OP_PARENT[op]}.{op}"


def prunable_paths(model: nn.Module) -> list[str]:
    """All pruned module paths of ``model`` in model order (blocks ascending, ops q..down)."""
    return [module_path(i, op) for i in range(len(decoder_layers(model))) for op in LINEAR_OPS]
