"""REINFORCE pieces of IA-RED^2 (Eq. 2 and the self-critical baseline), as pure tensor functions."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["reward", "self_critical_advantage", "policy_gradient_loss", "REWARDS"]

REWARDS = ("square", "linear")


def reward(kept: Tensor, num_patches: int, correct: Tensor, tau: float, kind: str = "square") -> Tensor:
    """Per-sample reward ``R(u)``.

    ``1 - (|u|_0 / N)^2`` ("square", the paper) or ``1 - |u|_0 / N`` ("linear") when the
    prediction is correct, else ``-tau``.

    Args:
        kept: ``(B,)`` number of patch tokens kept, ``|u|_0``.
        num_patches: N.
        correct: ``(B,)`` bool, prediction equals the label.
        tau: penalty for a wrong prediction.
        kind: "square" or "linear".
    """
    if kind not in REWARDS:
        raise ValueError(f"reward kind must be one of {REWARDS}, got {kind!r}")
    ratio = kept.float() / num_patches
    efficiency = 1.0 - (ratio ** 2 if kind == "square" else ratio)
    return torch.where(correct.bool(), efficiency, torch.full_like(efficiency, -tau))


def self_critical_advantage(sampled_reward: Tensor, greedy_reward: Tensor) -> Tensor:
    """``A = R(u) - R(u_hat)``: the greedy decision is the baseline (no gradient through it)."""
    return (sampled_reward - greedy_reward).detach()


def policy_gradient_loss(advantage: Tensor, log_prob: Tensor) -> Tensor:
    """``-mean_b(A_b * log pi(u_b))`` with ``log_prob`` the per-sample sum of token log-probabilities."""
    return -(advantage.detach() * log_prob).mean()
