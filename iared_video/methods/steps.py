"""Pieces of one training step shared by every method: settings, autocast, the cross-entropy step.

Method-specific steps (REINFORCE, Gumbel, DynamicViT) live in their method's module under ``methods/``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StepArgs", "autocast", "keep_ratios", "top1_err", "ce_step"]


@dataclass
class StepArgs:
    """Plain settings of a training step: the engine's, and the method's own (``Method.step_options``)."""

    clip_grad: float = 0.0
    accum_steps: int = 1
    amp_dtype: torch.dtype | None = None
    options: Any = None  # the selected method's step options (e.g. IA-RED^2's ``RewardOptions``)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` with ``dtype``, or nothing when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def keep_ratios(out: Any) -> Tensor:
    """``(B, D)`` fraction of patch tokens present after each group."""
    return torch.stack([k.float().mean(1) for k in out.keep], dim=1)


def top1_err(logits: Tensor, labels: Tensor) -> float:
    """Top-1 error (%) of a batch."""
    return 100.0 * (logits.argmax(1) != labels).float().mean().item()


def ce_step(net: nn.Module, x: Tensor, y: Tensor, modes: list[str], args: StepArgs) -> tuple[Tensor, dict]:
    """Cross-entropy loss of the model run with ``modes`` (fixed-ratio drop / greedy interpreters applied)."""
    with autocast(x.device, args.amp_dtype):
        out = net(x, return_policy=True, modes=modes)
        loss = F.cross_entropy(out.logits.float(), y)
    return loss, {"loss": loss.item(), "keep_ratio": out.keep_ratio.mean().item(), "top1_err": top1_err(out.logits, y)}
