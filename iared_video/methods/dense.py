"""The dense model (``METHOD.NAME dense``): every token through every block, the reference of every table."""

from __future__ import annotations

from fvcore.common.config import CfgNode
from torch import nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Method, Variant
from iared_video.models.backbones import Backbone
from iared_video.models.policies import NoDropPolicy
from iared_video.models.policy_model import PolicyModel

__all__ = ["Dense"]


class Dense(Method):
    """No token reduction; one ``"train"`` stage with cross-entropy."""

    name, policy_type, has_scores, benchmarked = "dense", NoDropPolicy, False, True

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return PolicyModel(backbone, NoDropPolicy(), cfg.IARED.NUM_GROUPS)

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        if keep_ratio is not None:
            return []
        return [Variant("dense", PolicyModel(bench.backbone, NoDropPolicy(), bench.num_groups), self.name)]


register(Dense())
