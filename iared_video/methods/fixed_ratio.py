"""The paper's fixed-ratio baselines: drop ``IARED.DROP_RATIO`` of the patch tokens at the input, lowest first.

* ``random``: uniform random scores;
* ``attention``: head-averaged class-token attention of ``IARED.ATTENTION_BLOCK`` (the paper's Block_1), the
  blocks before it run densely first (counted in its FLOPs);
* ``temporal_diff`` (video): L2 distance of a patch token to the same position one frame earlier.

Each is fine-tuned with cross-entropy in one ``"train"`` stage, the drop applied.
"""

from __future__ import annotations

from typing import cast

from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Count, Knob, Method, Variant
from iared_video.models.backbones import Backbone
from iared_video.models.iared import IARED
from iared_video.models.policies import AttentionPolicy, FixedRatioPolicy, RandomPolicy, TemporalDiffPolicy

__all__ = ["FixedRatio", "RawAttention"]


class FixedRatio(Method):
    """A fixed-ratio drop at the input (group 0) by the scores of ``policy_type``."""

    synthetic_config = "random"
    knob = Knob("IARED.DROP_RATIO", 0.0, 0.95)

    def __init__(self, name: str, policy_type: type[FixedRatioPolicy], needs_video: bool = False) -> None:
        self.name, self.policy_type, self.needs_video = name, policy_type, needs_video
        super().__init__()

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return self.policy_type(drop_ratio)

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return IARED(backbone, self.policy(cfg, cfg.IARED.DROP_RATIO), cfg.IARED.NUM_GROUPS)

    def matched_opts(self, cfg: CfgNode, drop_ratio: float) -> list[str]:
        return ["IARED.DROP_RATIO", repr(drop_ratio)]

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        if keep_ratio is None:
            return []
        model = IARED(bench.backbone, self.policy(bench.cfg, 1.0 - keep_ratio), bench.num_groups)
        return [Variant(f"{self.name}@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio)]


class RawAttention(FixedRatio):
    """The raw-attention baseline: its scoring runs the blocks before ``IARED.ATTENTION_BLOCK`` on every token."""

    joint_attention_only = True

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return AttentionPolicy(drop_ratio, cfg.IARED.ATTENTION_BLOCK)

    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        from iared_video.models.flops import attention_policy_macs

        iared = cast(IARED, model)
        return attention_policy_macs(iared.backbone, num_scored + num_prefix, cast(AttentionPolicy, iared.policy).block)


register(FixedRatio("random", RandomPolicy))
register(RawAttention("attention", AttentionPolicy))
register(FixedRatio("temporal_diff", TemporalDiffPolicy, needs_video=True))
