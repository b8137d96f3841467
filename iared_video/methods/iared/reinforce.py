"""REINFORCE pieces of IA-RED^2 (Eq. 2 and the self-critical baseline), as pure tensor functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RewardOptions", "reward", "reward_denominator", "self_critical_advantage", "leave_one_out_advantage",
           "policy_gradient_loss", "REWARDS", "REWARD_NORMALIZERS", "REWARD_OUTCOMES", "REINFORCE_BASELINES", "outcome"]

REWARDS = ("square", "linear")
REWARD_NORMALIZERS = ("original", "entering")
REWARD_OUTCOMES = ("prediction", "probability")  # what "correct" is in the reward (IARED.REWARD_OUTCOME)
REINFORCE_BASELINES = ("greedy", "leave_one_out")


@dataclass(frozen=True)
class RewardOptions:
    """IA-RED^2's REINFORCE settings (``IARED.TAU``, ``IARED.REWARD*``, ``IARED.REINFORCE_*``)."""

    tau: float = 0.5
    reward_kind: str = "square"
    reward_normalizer: str = "original"  # N of |u|_0 / N for groups after the first
    reward_outcome: str = "prediction"  # the prediction right or wrong, or p(label)
    reinforce_samples: int = 1  # decisions sampled per input in a REINFORCE step
    reinforce_baseline: str = "greedy"  # "greedy" (self-critical) or "leave_one_out"


def reward_denominator(keep: Sequence[Tensor], group: int, normalizer: str = "original") -> Tensor:
    """``(B,)`` denominator N of group ``group``'s efficiency term ``|u|_0 / N``.

    Args:
        keep: per group ``(B, N)`` bool, the patch tokens present after that group (``PolicyOutput.keep``).
        group: 0-based group whose interpreter is trained.
        normalizer: "original": N, the input's patch tokens (for every group); "entering": the tokens present at
            the group's entry, i.e. kept after group ``group - 1`` (N for the first group).
    """
    if normalizer not in REWARD_NORMALIZERS:
        raise ValueError(f"reward normalizer must be one of {REWARD_NORMALIZERS}, got {normalizer!r}")
    current = keep[group]
    if normalizer == "original" or group == 0:
        return torch.full(current.shape[:1], current.shape[1], dtype=torch.float32, device=current.device)
    return keep[group - 1].sum(dim=1).float().clamp_min(1.0)


def outcome(logits: Tensor, labels: Tensor, kind: str = "prediction") -> Tensor:
    """``(B,)`` how right each prediction is: bool ``argmax == label`` ("prediction", the paper) or the
    probability the model gives the label ("probability")."""
    if kind not in REWARD_OUTCOMES:
        raise ValueError(f"reward outcome must be one of {REWARD_OUTCOMES}, got {kind!r}")
    if kind == "prediction":
        return logits.argmax(1) == labels
    return logits.float().softmax(1).gather(1, labels[:, None]).squeeze(1)


def reward(kept: Tensor, num_patches: int | Tensor, correct: Tensor, tau: float, kind: str = "square") -> Tensor:
    """Per-sample reward ``R(u)``.

    ``1 - (|u|_0 / N)^2`` ("square", the paper) or ``1 - |u|_0 / N`` ("linear") when the
    prediction is correct, else ``-tau``. A float ``correct`` is the probability ``p`` that it is (``outcome``
    "probability"): the reward's expectation ``p * efficiency - (1 - p) * tau``.

    Args:
        kept: ``(B,)`` number of patch tokens kept, ``|u|_0``.
        num_patches: N, or ``(B,)`` per-sample denominators (``reward_denominator``).
        correct: ``(B,)`` bool, prediction equals the label; or float in [0, 1].
        tau: penalty for a wrong prediction.
        kind: "square" or "linear".
    """
    if kind not in REWARDS:
        raise ValueError(f"reward kind must be one of {REWARDS}, got {kind!r}")
    ratio = kept.float() / num_patches
    efficiency = 1.0 - (ratio ** 2 if kind == "square" else ratio)
    if correct.is_floating_point():
        return correct * efficiency - (1.0 - correct) * tau
    return torch.where(correct.bool(), efficiency, torch.full_like(efficiency, -tau))


def self_critical_advantage(sampled_reward: Tensor, greedy_reward: Tensor) -> Tensor:
    """``A = R(u) - R(u_hat)``: the greedy decision is the baseline (no gradient through it)."""
    return (sampled_reward - greedy_reward).detach()


def leave_one_out_advantage(sampled_reward: Tensor, num_samples: int) -> Tensor:
    """``A_bk = R(u_bk) - mean_{j != k} R(u_bj)`` for ``num_samples`` K >= 2 samples of each input.

    ``sampled_reward`` is ``(B * K,)``, input-major (input b's samples are rows ``b*K .. b*K + K - 1``).
    """
    if num_samples < 2:
        raise ValueError(f"the leave-one-out baseline needs at least 2 samples per input, got {num_samples}")
    r = sampled_reward.detach().view(-1, num_samples)
    others = (r.sum(1, keepdim=True) - r) / (num_samples - 1)
    return (r - others).reshape(-1)


def policy_gradient_loss(advantage: Tensor, log_prob: Tensor) -> Tensor:
    """``-mean_b(A_b * log pi(u_b))`` with ``log_prob`` the per-sample sum of token log-probabilities."""
    return -(advantage.detach() * log_prob).mean()
