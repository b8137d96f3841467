"""The training schedule as a list of stages, and which parameters each stage trains.

Each method builds its own schedule (``Method.stages``); this module holds the stage vocabulary every
method's schedule is written in:

* a whole-model stage (``"train"``, ``"gumbel"``, ...) trains every parameter with every group in the
  stage's ``mode`` (``"greedy"``: the policy's drop applied; ``"sample"``: straight-through Gumbel);
* IA-RED^2's Alg. 1 stages: for each group i, an ``"interpreter"`` stage (REINFORCE on interpreter i only)
  then a ``"backbone"`` stage (cross-entropy on the blocks of groups i..D, the final norm and the head).
  Patch embedding, positional/time embeddings and the class/distillation tokens stay frozen throughout;
  which parameters an interpreter stage trains is IA-RED^2's to say (``methods/iared``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from fvcore.common.config import CfgNode
from torch import nn

from iared_video.models.policy_model import PolicyModel

__all__ = ["Stage", "StagePlan", "last_drop_index", "train_modes", "eval_modes", "set_trainable",
           "freeze_parameters", "backbone_stage_modules", "HEAD_MODULES", "CURRICULUM_KINDS"]

# Backbone modules after the last block (timm and TimeSformer names); trained in every backbone stage.
HEAD_MODULES = ("norm", "fc_norm", "head", "head_dist")
# Stage kinds of IA-RED^2's Alg. 1 curriculum (one group at a time); every other kind trains the whole model.
CURRICULUM_KINDS = ("interpreter", "backbone")


@dataclass(frozen=True)
class Stage:
    """One stage of training.

    Attributes:
        kind: "interpreter" (Alg. 1 step a), "backbone" (step b), or a whole-model stage: "train" (plain
            training), "gumbel" (end-to-end straight-through Gumbel interpreters).
        group: 0-based group i the stage works on (0 for whole-model stages).
        epochs: epochs in the stage.
        mode: the policy mode of every group in a whole-model stage.
    """

    kind: str
    group: int
    epochs: int
    mode: str = "greedy"

    @property
    def whole_model(self) -> bool:
        return self.kind not in CURRICULUM_KINDS

    @property
    def name(self) -> str:
        return self.kind if self.whole_model else f"{self.kind}_g{self.group + 1}"


@dataclass(frozen=True)
class StagePlan:
    """What a training schedule is built from (IARED.NUM_GROUPS, SOLVER.MAX_EPOCH, IARED.*_EPOCHS, ...)."""

    num_groups: int
    max_epoch: int
    interpreter_epochs: int = 0
    backbone_epochs: int = 0
    first_group: int = 0
    last_group: int | None = None  # 0-based, inclusive; None: the last group

    @property
    def dropping_groups(self) -> range:
        """0-based groups whose interpreters may drop, ``first_group`` to ``last_group``."""
        last = self.num_groups - 1 if self.last_group is None else self.last_group
        return range(self.first_group, last + 1)

    @classmethod
    def from_cfg(cls, cfg: CfgNode) -> StagePlan:
        i = cfg.IARED
        return cls(i.NUM_GROUPS, cfg.SOLVER.MAX_EPOCH, i.INTERPRETER_EPOCHS, i.BACKBONE_EPOCHS, i.FIRST_DROP_GROUP - 1,
                   last_drop_index(cfg))


def last_drop_index(cfg: CfgNode) -> int | None:
    """0-based index of ``IARED.LAST_DROP_GROUP`` (1-based), None for its 0 (every group from the first)."""
    return int(cfg.IARED.LAST_DROP_GROUP) - 1 if cfg.IARED.LAST_DROP_GROUP else None


def train_modes(stage: Stage, num_groups: int) -> list[str]:
    """Policy modes per group while training ``stage``.

    interpreter i: greedy before i, sample at i, keep_all after; backbone i: greedy up to i, keep_all after;
    whole-model stages: the stage's mode everywhere (greedy: the fixed-ratio drop is applied).
    """
    if stage.whole_model:
        return [stage.mode] * num_groups
    at_i = "sample" if stage.kind == "interpreter" else "greedy"
    return ["greedy" if j < stage.group else at_i if j == stage.group else "keep_all" for j in range(num_groups)]


def eval_modes(stage: Stage | None, num_groups: int) -> list[str]:
    """Modes for validation during ``stage``: greedy up to its group, keep_all after (all greedy if None)."""
    if stage is None or stage.whole_model:
        return ["greedy"] * num_groups
    return ["greedy" if j <= stage.group else "keep_all" for j in range(num_groups)]


def backbone_stage_modules(model: PolicyModel, group: int) -> list[nn.Module]:
    """What a ``"backbone"`` stage of ``group`` trains: the blocks of groups ``group``..D, final norm and head."""
    modules: list[nn.Module] = [block for j in range(group, model.num_groups) for block in model.group_blocks(j)]
    modules += [getattr(model.backbone, n) for n in HEAD_MODULES if isinstance(getattr(model.backbone, n, None),
                                                                              nn.Module)]
    return modules


def set_trainable(model: nn.Module, stage: Stage) -> None:
    """Set ``requires_grad`` on ``model`` for a whole-model or ``"backbone"`` stage; everything else is frozen.

    A stage kind of one method's own (IA-RED^2's ``"interpreter"``) is set by that method's ``prepare_stage``.
    """
    if stage.whole_model:
        model.requires_grad_(True)
        return
    if stage.kind != "backbone":
        raise ValueError(f"stage kind {stage.kind!r} is set by its method's prepare_stage")
    model.requires_grad_(False)
    for module in backbone_stage_modules(cast(PolicyModel, model), stage.group):
        module.requires_grad_(True)


def freeze_parameters(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Stop training every parameter whose last name part is in ``names`` (e.g. ``pos_embed``); returns their names."""
    wanted, frozen = set(names), []
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] in wanted:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen
