"""DynamicViT's objective: cross-entropy + keep-ratio MSE + KL and token distillation from a dense teacher.

Every function takes tensors (or the model's output dataclass) and plain numbers, never a config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LossWeights", "ratio_loss", "token_distill_loss", "dynamicvit_loss"]


@dataclass
class LossWeights:
    """Weights and target of the DynamicViT objective."""

    keep_rate: float = 0.7
    ratio: float = 2.0
    distill: float = 0.5
    token_distill: float = 0.5


def ratio_loss(masks: Sequence[Tensor], keep_rate: float) -> Tensor:
    """Mean over stages s of the batch mean of ``(kept_fraction_b - rho^s)^2``."""
    terms = [((m.mean(dim=1) - keep_rate ** (s + 1)) ** 2).mean() for s, m in enumerate(masks)]
    return torch.stack(terms).mean()


def token_distill_loss(student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
    """MSE between ``(B, N, C)`` student and teacher tokens over the kept tokens (``keep`` ``(B, N)``)."""
    w = (keep.detach() > 0.5).to(student.dtype).unsqueeze(-1)
    sq = ((student - teacher) ** 2 * w).sum()
    return sq / (w.sum() * student.shape[-1]).clamp_min(1.0)


def dynamicvit_loss(out: Any, labels: Tensor, teacher_logits: Tensor, teacher_tokens: Tensor,
                    weights: LossWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """CE + ratio MSE + KL(teacher || student) + token distillation, weighted; returns total and terms.

    Args:
        out: a ``DynamicViTOutput`` (``logits``, ``masks``, ``patch_tokens``).
        labels: ``(B,)`` classes.
        teacher_logits, teacher_tokens: the frozen dense teacher's logits and final patch tokens.
        weights: the loss weights and keep-rate target.
    """
    terms = {
        "ce": F.cross_entropy(out.logits.float(), labels),
        "ratio": ratio_loss(out.masks, weights.keep_rate),
        "kl": F.kl_div(out.logits.float().log_softmax(-1), teacher_logits.float().log_softmax(-1),
                       reduction="batchmean", log_target=True),
        "token": token_distill_loss(out.patch_tokens.float(), teacher_tokens.float(), out.masks[-1]),
    }
    total = (terms["ce"] + weights.ratio * terms["ratio"] + weights.distill * terms["kl"]
             + weights.token_distill * terms["token"])
    return total, terms

