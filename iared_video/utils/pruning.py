"""Unstructured magnitude pruning of linear layers (no fine-tuning) and their non-zero MACs.

Paper Fig. 5 compares weight pruning alone and combined with token dropping;
the cost axis is the MACs of the linear layers counting only non-zero weights,
measured on the tokens that actually pass each layer (forward hooks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["prunable_linears", "magnitude_prune", "sparsity", "count_linear_macs"]

logger = logging.getLogger(__name__)


def prunable_linears(model: nn.Module, include_policy: bool = False) -> dict[str, nn.Linear]:
    """Linear layers by name: the backbone's (blocks and head), plus the policy's when ``include_policy``."""
    root = getattr(model, "module", model)
    layers = {}
    for name, module in root.named_modules():
        if isinstance(module, nn.Linear) and (include_policy or not name.startswith("policy.")):
            layers[name] = module
    return layers


@torch.no_grad()
def magnitude_prune(layers: dict[str, nn.Linear], amount: float, scope: str = "global") -> dict[str, float]:
    """Zero the smallest-magnitude ``amount`` of weights, in place; returns each layer's sparsity.

    Args:
        layers: the layers to prune (biases are left alone).
        amount: fraction of weights to zero, in [0, 1).
        scope: ``"global"`` (one threshold over all layers) or ``"layer"`` (the same fraction per layer).
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if amount == 0.0:
        return {name: sparsity(m.weight) for name, m in layers.items()}
    if scope == "global":
        magnitudes = torch.cat([m.weight.abs().flatten() for m in layers.values()])
        cut = _kth_smallest(magnitudes, amount)
        for m in layers.values():
            m.weight.masked_fill_(m.weight.abs() <= cut, 0.0)
    else:
        for m in layers.values():
            m.weight.masked_fill_(m.weight.abs() <= _kth_smallest(m.weight.abs().flatten(), amount), 0.0)
    return {name: sparsity(m.weight) for name, m in layers.items()}


def _kth_smallest(values: Tensor, fraction: float) -> Tensor:
    k = max(1, int(round(fraction * values.numel())))
    return values.float().kthvalue(k).values


def sparsity(weight: Tensor) -> float:
    """Fraction of exactly-zero entries."""
    return float((weight == 0).sum()) / weight.numel()


@contextmanager
def count_linear_macs(layers: dict[str, nn.Linear]) -> Iterator[dict[str, float]]:
    """Inside the block, forwards add ``rows x nnz(W)`` per linear call to ``totals["macs"]`` (and dense MACs
    ``rows x in x out`` to ``totals["dense_macs"]``)."""
    totals = {"macs": 0.0, "dense_macs": 0.0}
    nnz = {id(m): float((m.weight != 0).sum()) for m in layers.values()}

    def hook(module: nn.Linear, args: tuple, _out: Tensor) -> None:
        rows = args[0].numel() / module.in_features
        totals["macs"] += rows * nnz[id(module)]
        totals["dense_macs"] += rows * module.weight.numel()

    handles = [m.register_forward_hook(hook) for m in layers.values()]
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()
