"""Optimisers from config values and a per-iteration cosine schedule with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from iared_video.config.choices import OPTIMIZERS  # listed once, with the config keys

__all__ = ["LRRule", "build_optimizer", "cosine_warmup_lr", "group_lr", "LRSchedule", "OPTIMIZERS"]


@dataclass(frozen=True)
class LRRule:
    """How one part of the model follows the schedule.

    Attributes:
        scale: its learning rate as a multiple of the schedule's (e.g. a slower backbone).
        hold_steps: optimiser steps at learning rate 0 before it starts.
        cap: when set, its rate is ``min(cap, schedule's rate)`` instead of the scaled rate (the official
            DynamicViT backbone rule).
        label: the name of the part (stored as the param group's ``label``).
    """

    scale: float = 1.0
    hold_steps: int = 0
    cap: float | None = None
    label: str = ""

    def group_keys(self) -> dict[str, Any]:
        """The param-group entries ``group_lr`` reads (plain values, so optimiser states load weights-only)."""
        keys: dict[str, Any] = {"lr_scale": self.scale, "label": self.label}
        if self.hold_steps:
            keys["hold_steps"] = self.hold_steps
        if self.cap is not None:
            keys["lr_cap"] = self.cap
        return keys


def _param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float,
                  rule: Callable[[str], LRRule] | None = None) -> list[dict]:
    """Groups by (rule, decay); no weight decay on biases, norms and 1-d tokens (timm convention).

    Each group carries its ``LRRule``'s entries (``rule(name)``, ``LRRule()`` without it; ``LRSchedule`` applies
    them), so that a caller can give a part of the model its own rate.
    """
    groups: dict[tuple[LRRule, bool], list[nn.Parameter]] = {}
    for name, param in params:
        if not param.requires_grad:
            continue
        decay = not (param.ndim <= 1 or name.endswith("token"))
        groups.setdefault((rule(name) if rule is not None else LRRule(), decay), []).append(param)
    ordered = sorted(groups.items(), key=lambda kv: (-kv[0][0].scale, not kv[0][1]))  # stable: ties keep model order
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": lr * r.scale, **r.group_keys()}
            for (r, decay), ps in ordered]


def build_optimizer(named_params: Iterable[tuple[str, nn.Parameter]], method: str, lr: float,
                    weight_decay: float = 0.0, momentum: float = 0.9, nesterov: bool = True,
                    rule: Callable[[str], LRRule] | None = None) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over the trainable parameters in ``named_params``.

    ``rule(name)`` gives a parameter's ``LRRule`` (scale, hold, cap, label); groups are ordered by decreasing
    scale, so ``param_groups[0]`` runs at the full ``lr`` when any does.
    """
    groups = _param_groups(named_params, weight_decay, lr, rule)
    if not groups:
        raise ValueError("no trainable parameters to optimise")
    if method == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if method == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if method == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimiser must be one of {OPTIMIZERS}, got {method!r}")


def cosine_warmup_lr(step: int, total_steps: int, base_lr: float, end_lr: float = 0.0, warmup_steps: int = 0,
                     policy: str = "cosine") -> float:
    """Learning rate at ``step`` (0-based): linear warm-up from ~0, then cosine from ``base_lr`` to ``end_lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if policy == "constant":
        return base_lr
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return end_lr + (base_lr - end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def group_lr(group: dict, lr: float, step: int) -> float:
    """Learning rate of one param group at ``step`` (0-based) when the schedule's unscaled rate is ``lr``.

    The group's ``LRRule`` entries: ``hold_steps`` (0 before that step), ``lr_cap`` (then ``min(lr_cap, lr)``),
    else ``lr * lr_scale`` (scale 1.0 when the group has none).
    """
    if step < group.get("hold_steps", 0):
        return 0.0
    cap = group.get("lr_cap")
    return min(cap, lr) if cap is not None else lr * group.get("lr_scale", 1.0)


class LRSchedule:
    """Per-optimiser-step schedule; ``step()`` sets the lr for the next update. Keeps its position in state_dict.

    Every param group runs at ``group_lr(group, lr(), step)``: ``lr() * group["lr_scale"]`` unless the group
    holds or caps its rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, base_lr: float, end_lr: float = 0.0,
                 warmup_steps: int = 0, policy: str = "cosine") -> None:
        self.optimizer, self.total_steps, self.base_lr = optimizer, total_steps, base_lr
        self.end_lr, self.warmup_steps, self.policy = end_lr, warmup_steps, policy
        self.last_step = 0
        self._apply()

    def lr(self) -> float:
        """The unscaled learning rate at the current step."""
        return cosine_warmup_lr(self.last_step, self.total_steps, self.base_lr, self.end_lr, self.warmup_steps,
                                self.policy)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group_lr(group, self.lr(), self.last_step)

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self._apply()
