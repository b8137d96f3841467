"""DynamicViT (Rao et al., NeurIPS 2021): prediction modules keep the top ``floor(rho^s N)`` tokens at stage s.

Locations: ``DYNAMICVIT.PRUNE_LOCATIONS``, by default before the blocks at a quarter, a half and three quarters of
the depth ([3, 6, 9] on 12 blocks as in the paper, [1, 3, 4] on 6).

Model: ``model.DynamicViT`` (masked dense forward in training, real removal at inference). Training:
one ``"train"`` stage with ``losses.dynamicvit_loss`` (CE + keep-ratio MSE + KL and token distillation
from a frozen copy of the initial dense model), the official recipe's frozen embeddings
(``DYNAMICVIT.FROZEN_PARAMS``) and backbone learning-rate rule (``DYNAMICVIT.BACKBONE_*``). FLOPs: every
LayerNorm and linear layer of a prediction module on the tokens it scores.
"""

from __future__ import annotations

import logging
import math
from typing import cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Count, Knob, Method, Variant, resolve_locations
from iared_video.methods.dynamicvit.losses import LossWeights, dynamicvit_loss
from iared_video.methods.dynamicvit.model import DynamicViT, DynamicViTPolicy, make_teacher, predictor_macs
from iared_video.methods.stages import Stage, freeze_parameters
from iared_video.methods.steps import autocast, top1_err
from iared_video.models.backbones import Backbone, dense_forward
from iared_video.models.optim import LRRule, build_optimizer

__all__ = ["DynamicViTMethod", "dynamicvit_step", "prune_locations"]

logger = logging.getLogger(__name__)


def dynamicvit_step(net: nn.Module, teacher: Backbone, x: Tensor, y: Tensor, weights: LossWeights,
                    amp_dtype: torch.dtype | None = None) -> tuple[Tensor, dict]:
    """DynamicViT objective: CE + keep-ratio MSE + KL and token distillation from the frozen dense ``teacher``."""
    with autocast(x.device, amp_dtype):
        out = net(x, return_policy=True)
        with torch.no_grad():
            trace = dense_forward(teacher, x)
    assert trace.patch_tokens is not None  # dense_forward always fills it
    loss, terms = dynamicvit_loss(out, y, trace.logits, trace.patch_tokens, weights)
    return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                  "keep_ratio": out.masks[-1].mean().item(), "top1_err": top1_err(out.logits, y)}


def prune_locations(cfg: CfgNode, depth: int) -> list[int]:
    """``DYNAMICVIT.PRUNE_LOCATIONS``, or for ``[]`` the blocks at a quarter, a half and three quarters of the
    depth (``depth_quarters``; a predictor needs a block before it, so never block 0)."""
    return resolve_locations(cfg.DYNAMICVIT.PRUNE_LOCATIONS, depth, first=1)


class DynamicViTMethod(Method):
    """DynamicViT on the IA-RED^2 backbones (joint space-time attention)."""

    name, policy_type, synthetic_config, joint_attention_only = "dynamicvit", DynamicViTPolicy, "dynamicvit", True
    knob = Knob("DYNAMICVIT.KEEP_RATE", 0.05, 1.0, cost_rises=True)
    config_nodes, choices = ("DYNAMICVIT",), {"DYNAMICVIT.BACKBONE_LR_RULE": ("capped", "scaled")}

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        d = cfg.DYNAMICVIT
        return DynamicViT(backbone, prune_locations(cfg, len(backbone.blocks)), d.KEEP_RATE, d.GUMBEL_TAU)

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        d, errors = cfg.DYNAMICVIT, []
        locs = prune_locations(cfg, depth)
        if selected and (not locs or locs != sorted(set(locs)) or locs[0] <= 0 or locs[-1] >= depth):
            errors.append(f"DYNAMICVIT.PRUNE_LOCATIONS must increase strictly within (0, {depth}), got {locs}")
        if not 0.0 < d.KEEP_RATE <= 1.0:
            errors.append(f"DYNAMICVIT.KEEP_RATE must lie in (0, 1], got {d.KEEP_RATE}")
        if d.GUMBEL_TAU <= 0:
            errors.append(f"DYNAMICVIT.GUMBEL_TAU must be > 0, got {d.GUMBEL_TAU}")
        for key in ("BACKBONE_LR_SCALE", "BACKBONE_HOLD_EPOCHS"):
            if not 0.0 <= d[key] < math.inf:
                errors.append(f"DYNAMICVIT.{key} must be a finite number >= 0, got {d[key]}")
        if not all(isinstance(name, str) and name for name in d.FROZEN_PARAMS):
            errors.append(f"DYNAMICVIT.FROZEN_PARAMS must list parameter names, got {list(d.FROZEN_PARAMS)}")
        return errors

    def step(self, run, x: Tensor, y: Tensor, ctx) -> tuple[Tensor, dict]:
        return dynamicvit_step(run.net, ctx.teacher, x, y, ctx.args.options, ctx.args.amp_dtype)

    def step_options(self, cfg: CfgNode) -> LossWeights:
        d = cfg.DYNAMICVIT
        return LossWeights(d.KEEP_RATE, d.RATIO_WEIGHT, d.DISTILL_WEIGHT, d.TOKEN_DISTILL_WEIGHT)

    def prepare_stage(self, cfg: CfgNode, model: nn.Module, stage: Stage) -> None:
        super().prepare_stage(cfg, model, stage)
        frozen = freeze_parameters(model, cfg.DYNAMICVIT.FROZEN_PARAMS)
        logger.info("DynamicViT: %s stay frozen (DYNAMICVIT.FROZEN_PARAMS)", ", ".join(frozen) or "nothing")

    def optimizer(self, cfg: CfgNode, model: nn.Module, stage: Stage, steps_per_epoch: int) -> torch.optim.Optimizer:
        """Prediction modules (``policy.*``) at SOLVER.BASE_LR; the backbone held at 0 for
        ``BACKBONE_HOLD_EPOCHS``, then at ``BACKBONE_LR_SCALE`` by ``BACKBONE_LR_RULE`` (see ``optim.group_lr``)."""
        s, d = cfg.SOLVER, cfg.DYNAMICVIT
        scale = d.BACKBONE_LR_SCALE
        backbone = LRRule(scale, int(round(d.BACKBONE_HOLD_EPOCHS * steps_per_epoch)),
                          scale * s.BASE_LR if d.BACKBONE_LR_RULE == "capped" else None, "backbone")
        predictor = LRRule(label="predictor")
        return build_optimizer(model.named_parameters(), s.OPTIMIZING_METHOD, s.BASE_LR, s.WEIGHT_DECAY, s.MOMENTUM,
                               s.NESTEROV, lambda n: predictor if n.startswith("policy.") else backbone)

    def teacher(self, cfg: CfgNode, model: nn.Module) -> Backbone:
        return make_teacher(cast(DynamicViT, model).backbone)

    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        policy = cast(DynamicViTPolicy, model.policy)
        return predictor_macs(policy.predictors[group - 1], num_scored)  # group s >= 1 opens with predictor s

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        """Untrained predictors (same cost) over the configured locations: at ``DYNAMICVIT.KEEP_RATE`` (as
        configured) or, at a keep target r, at rho = r^(1/S)."""
        locs = prune_locations(bench.cfg, len(bench.backbone.blocks))
        if keep_ratio is None:
            rho = bench.cfg.DYNAMICVIT.KEEP_RATE
            return [Variant(f"{self.name}@rho={rho:g}", DynamicViT(bench.backbone, locs, rho), self.name,
                            info={"rho": rho})]
        model = DynamicViT(bench.backbone, locs, keep_ratio ** (1.0 / len(locs)))
        return [Variant(f"{self.name}@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio)]


register(DynamicViTMethod())
