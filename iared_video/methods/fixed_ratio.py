"""The paper's fixed-ratio baselines: drop ``DROP.RATIO`` of the patch tokens at the input, lowest first.

* ``drop_random`` (table label ``random``): uniform random scores;
* ``drop_attention`` (``attention``): head-averaged class-token attention of ``DROP.ATTENTION_BLOCK`` (the paper's
  Block_1), the blocks before it run densely first (counted in its FLOPs);
* ``drop_temporal_diff`` (``temporal_diff``, video): L2 distance of a patch token to the same position one frame
  earlier.

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

    synthetic_config, config_nodes = "random", ("DROP",)
    knob = Knob("DROP.RATIO", 0.0, 0.95)

    def __init__(self, name: str, label: str, policy_type: type[FixedRatioPolicy], needs_video: bool = False) -> None:
        self.name, self.label, self.policy_type, self.needs_video = name, label, policy_type, needs_video
        super().__init__()

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return self.policy_type(drop_ratio)

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return IARED(backbone, self.policy(cfg, cfg.DROP.RATIO), cfg.IARED.NUM_GROUPS)

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        """The DROP section (shared by the three drops; ``methods.config_errors`` reports a problem once)."""
        errors = []
        if not 0.0 <= cfg.DROP.RATIO < 1.0:
            errors.append(f"DROP.RATIO must lie in [0, 1), got {cfg.DROP.RATIO}")
        if not 0 <= cfg.DROP.ATTENTION_BLOCK < depth:
            errors.append(f"DROP.ATTENTION_BLOCK={cfg.DROP.ATTENTION_BLOCK} must index a block in [0, {depth})")
        return errors

    def matched_opts(self, cfg: CfgNode, drop_ratio: float) -> list[str]:
        return ["DROP.RATIO", repr(drop_ratio)]

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        if keep_ratio is None:
            return []
        model = IARED(bench.backbone, self.policy(bench.cfg, 1.0 - keep_ratio), bench.num_groups)
        return [Variant(f"{self.label}@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio)]


class RawAttention(FixedRatio):
    """The raw-attention baseline: its scoring runs the blocks before ``DROP.ATTENTION_BLOCK`` on every token."""

    joint_attention_only = True

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return AttentionPolicy(drop_ratio, cfg.DROP.ATTENTION_BLOCK)

    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        from iared_video.models.flops import attention_policy_macs

        iared = cast(IARED, model)
        return attention_policy_macs(iared.backbone, num_scored + num_prefix, cast(AttentionPolicy, iared.policy).block)


register(FixedRatio("drop_random", "random", RandomPolicy))
register(RawAttention("drop_attention", "attention", AttentionPolicy))
register(FixedRatio("drop_temporal_diff", "temporal_diff", TemporalDiffPolicy, needs_video=True))
