"""The training schedule as a list of stages, and which parameters each stage trains.

Each method builds its own schedule (``Method.stages`` in ``iared_video/methods/``); this module holds the
stage vocabulary every method's schedule is written in:

* a whole-model stage (``"train"``, ``"gumbel"``, ...) trains every parameter with every group in the
  stage's ``mode`` (``"greedy"``: the policy's drop applied; ``"sample"``: straight-through Gumbel);
* IA-RED^2's Alg. 1 stages: for each group i, an ``"interpreter"`` stage (REINFORCE on interpreter i only)
  then a ``"backbone"`` stage (cross-entropy on the blocks of groups i..D, the final norm and the head).
  Patch embedding, positional/time embeddings and the class/distillation tokens stay frozen throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from fvcore.common.config import CfgNode
from torch import nn

if TYPE_CHECKING:
    from iared_video.models.iared import IARED
    from iared_video.models.policies import InterpreterPolicy

__all__ = ["Stage", "build_stages", "train_modes", "eval_modes", "set_trainable", "trainable_names",
           "freeze_parameters", "model_in_train_mode", "HEAD_MODULES", "CURRICULUM_KINDS"]

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


def build_stages(policy: str, num_groups: int, max_epoch: int, interpreter_epochs: int,
                 backbone_epochs: int, gumbel: bool = False, first_group: int = 0,
                 last_group: int | None = None) -> list[Stage]:
    """Stages of the method ``IARED.POLICY policy`` selects (``gumbel``: with ``IARED.GUMBEL``).

    Stages with zero epochs are left out. The IA-RED^2 curriculum runs from ``first_group`` to ``last_group``
    (0-based, inclusive; ``IARED.FIRST_DROP_GROUP - 1`` and ``IARED.LAST_DROP_GROUP - 1``, None: the last group):
    other groups never drop, so they get neither an interpreter nor a backbone stage.
    """
    from iared_video.methods import method_for_cfg
    from iared_video.methods.base import StagePlan

    selector = CfgNode({"IARED": {"POLICY": policy, "GUMBEL": bool(gumbel)}})
    plan = StagePlan(num_groups, max_epoch, interpreter_epochs, backbone_epochs, first_group, last_group)
    return method_for_cfg(selector).stages(plan)


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


def model_in_train_mode(stage: Stage) -> bool:
    """``model.train()`` during ``stage``; interpreter stages keep the frozen backbone in eval (deterministic
    rewards)."""
    return stage.kind != "interpreter"


def _backbone_stage_modules(module: nn.Module, group: int) -> list[nn.Module]:
    model = cast("IARED", module)
    modules: list[nn.Module] = [block for j in range(group, model.num_groups) for block in model.group_blocks(j)]
    modules += [getattr(model.backbone, n) for n in HEAD_MODULES if isinstance(getattr(model.backbone, n, None),
                                                                              nn.Module)]
    return modules


def set_trainable(model: nn.Module, stage: Stage) -> None:
    """Set ``requires_grad`` on ``model`` (an ``IARED``) for ``stage``; everything else is frozen."""
    if stage.whole_model:
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    if stage.kind == "interpreter":
        cast("InterpreterPolicy", model.policy).interpreters[stage.group].requires_grad_(True)
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
