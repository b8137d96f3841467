"""Optimisers from config values and a per-iteration cosine schedule with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from iared_video.config.choices import OPTIMIZERS  # listed once, with the config keys

__all__ = ["build_optimizer", "cosine_warmup_lr", "group_lr", "LRSchedule", "OPTIMIZERS"]


def _param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float,
                  lr_scale: Callable[[str], float] | None = None,
                  label: Callable[[str], str] | None = None) -> list[dict]:
    """Groups by (lr scale, decay, label); no weight decay on biases, norms and 1-d tokens (timm convention).

    Each group carries ``lr_scale`` (``lr_scale(name)``, 1.0 without it; ``LRSchedule`` multiplies it in) and
    ``label`` (``label(name)``, "" without it), so that a caller can give a part of the model its own rule.
    """
    groups: dict[tuple[float, bool, str], list[nn.Parameter]] = {}
    for name, param in params:
        if not param.requires_grad:
            continue
        decay = not (param.ndim <= 1 or name.endswith("token"))
        scale = float(lr_scale(name)) if lr_scale is not None else 1.0
        tag = label(name) if label is not None else ""
        groups.setdefault((scale, decay, tag), []).append(param)
    ordered = sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1]))  # stable: ties keep model order
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale, "lr": lr * scale,
             "label": tag} for (scale, decay, tag), ps in ordered]


def build_optimizer(named_params: Iterable[tuple[str, nn.Parameter]], method: str, lr: float,
                    weight_decay: float = 0.0, momentum: float = 0.9, nesterov: bool = True,
                    lr_scale: Callable[[str], float] | None = None,
                    label: Callable[[str], str] | None = None) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over the trainable parameters in ``named_params``.

    ``lr_scale(name)`` gives a parameter's learning rate as a multiple of ``lr`` (e.g. a slower backbone);
    groups are ordered by decreasing scale, so ``param_groups[0]`` runs at the full ``lr`` when any does.
    ``label(name)`` names the part of the model a parameter belongs to (stored as each group's ``label``).
    """
    groups = _param_groups(named_params, weight_decay, lr, lr_scale, label)
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

    Optional group keys: ``hold_steps`` (0 before that step), ``lr_cap`` (then ``min(lr_cap, lr)``, the
    official DynamicViT backbone rule), else ``lr * lr_scale`` (scale 1.0 when the group has none).
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
