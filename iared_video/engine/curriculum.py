"""The training schedule as a list of stages, and which parameters each stage trains.

Dense and fixed-ratio policies train in one ``"train"`` stage (every parameter,
the policy's drop applied). The interpreter policy follows Alg. 1 of IA-RED^2:
for each group i, an ``"interpreter"`` stage (REINFORCE on interpreter i only)
then a ``"backbone"`` stage (cross-entropy on the blocks of groups i..D, the
final norm and the head). Patch embedding, positional/time embeddings and the
class/distillation tokens stay frozen throughout the curriculum. The Gumbel
interpreter variant (``IARED.GUMBEL``) trains everything end-to-end in one
``"gumbel"`` stage with every group in ``"sample"`` (straight-through) mode
(cross-entropy plus a keep-ratio MSE, trainer);
DynamicViT trains in one ``"train"`` stage with its own loss and ``DYNAMICVIT.FROZEN_PARAMS`` frozen
(trainer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

__all__ = ["Stage", "build_stages", "train_modes", "eval_modes", "set_trainable", "trainable_names",
           "freeze_parameters", "HEAD_MODULES"]

# Backbone modules after the last block (timm and TimeSformer names); trained in every backbone stage.
HEAD_MODULES = ("norm", "fc_norm", "head", "head_dist")


@dataclass(frozen=True)
class Stage:
    """One stage of training.

    Attributes:
        kind: "train" (plain training), "interpreter" (Alg. 1 step a), "backbone" (step b) or "gumbel"
            (end-to-end straight-through Gumbel interpreters).
        group: 0-based group i the stage works on (0 for "train").
        epochs: epochs in the stage.
    """

    kind: str
    group: int
    epochs: int

    @property
    def name(self) -> str:
        return self.kind if self.kind in ("train", "gumbel") else f"{self.kind}_g{self.group + 1}"


def build_stages(policy: str, num_groups: int, max_epoch: int, interpreter_epochs: int,
                 backbone_epochs: int, gumbel: bool = False, first_group: int = 0) -> list[Stage]:
    """Stages for ``policy``; stages with zero epochs are left out.

    The curriculum starts at ``first_group`` (0-based, ``IARED.FIRST_DROP_GROUP - 1``): earlier groups never
    drop, so they get neither an interpreter nor a backbone stage.
    """
    if policy == "interpreter" and gumbel:
        return [Stage("gumbel", 0, max_epoch)] if max_epoch > 0 else []
    if policy != "interpreter":
        return [Stage("train", 0, max_epoch)] if max_epoch > 0 else []
    stages = []
    for group in range(first_group, num_groups):
        stages.append(Stage("interpreter", group, interpreter_epochs))
        stages.append(Stage("backbone", group, backbone_epochs))
    return [s for s in stages if s.epochs > 0]


def train_modes(stage: Stage, num_groups: int) -> list[str]:
    """Policy modes per group while training ``stage``.

    interpreter i: greedy before i, sample at i, keep_all after; backbone i: greedy up to i, keep_all after;
    train: greedy everywhere (the fixed-ratio drop is applied).
    """
    if stage.kind in ("train", "gumbel"):
        return ["sample" if stage.kind == "gumbel" else "greedy"] * num_groups
    at_i = "sample" if stage.kind == "interpreter" else "greedy"
    return ["greedy" if j < stage.group else at_i if j == stage.group else "keep_all" for j in range(num_groups)]


def eval_modes(stage: Stage | None, num_groups: int) -> list[str]:
    """Modes for validation during ``stage``: greedy up to its group, keep_all after (all greedy if None)."""
    if stage is None or stage.kind in ("train", "gumbel"):
        return ["greedy"] * num_groups
    return ["greedy" if j <= stage.group else "keep_all" for j in range(num_groups)]


def _backbone_stage_modules(model: nn.Module, group: int) -> list[nn.Module]:
    modules = [block for j in range(group, model.num_groups) for block in model.group_blocks(j)]
    modules += [getattr(model.backbone, n) for n in HEAD_MODULES if isinstance(getattr(model.backbone, n, None),
                                                                              nn.Module)]
    return modules


def set_trainable(model: nn.Module, stage: Stage) -> None:
    """Set ``requires_grad`` on ``model`` (an ``IARED``) for ``stage``; everything else is frozen."""
    if stage.kind in ("train", "gumbel"):
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    if stage.kind == "interpreter":
        model.policy.interpreters[stage.group].requires_grad_(True)
    elif stage.kind == "backbone":
        for module in _backbone_stage_modules(model, stage.group):
            module.requires_grad_(True)
    else:
        raise ValueError(f"unknown stage kind {stage.kind!r}")


def freeze_parameters(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Stop training every parameter whose last name part is in ``names`` (e.g. ``pos_embed``); returns their names."""
    wanted, frozen = set(names), []
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] in wanted:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def trainable_names(model: nn.Module) -> list[str]:
    """Names of parameters with ``requires_grad`` set."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
