"""The paper's fixed-ratio baselines: drop ``DROP.RATIO`` of the patch tokens at the input, lowest first.

* ``drop_random`` (table label ``random``): uniform random scores;
* ``drop_attention`` (``attention``): head-averaged class-token attention of ``DROP.ATTENTION_BLOCK`` (the paper's
  Block_1), the blocks before it run densely first (counted in its FLOPs);
* ``drop_temporal_diff`` (``temporal_diff``, video): L2 distance of a patch token to the same position one frame
  earlier.

Each is fine-tuned with cross-entropy in one ``"train"`` stage, the drop applied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from fvcore.common.config import CfgNode
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Count, Knob, Method, Variant
from iared_video.methods.stages import Stage, StagePlan
from iared_video.models.backbones import Backbone, Embedded
from iared_video.models.flops import linear_macs, norm_macs, timm_block_macs
from iared_video.models.policies import MODES, DropPolicy, GroupInput
from iared_video.models.policy_model import PolicyModel
from iared_video.models.token_ops import block_attention

__all__ = ["FixedRatio", "RawAttention", "FixedRatioPolicy", "RandomPolicy", "AttentionPolicy", "TemporalDiffPolicy",
           "PAPER_ATTENTION_BLOCK", "attention_policy_macs", "temporal_difference"]

PAPER_ATTENTION_BLOCK = 1  # the paper's raw-attention baseline: Block_1, the second block (0-based index 1)


class FixedRatioPolicy(DropPolicy):
    """Drops ``drop_ratio`` of the patch tokens at the input (group 0), lowest scores first."""

    def __init__(self, drop_ratio: float) -> None:
        super().__init__()
        if not 0.0 <= drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must lie in [0, 1), got {drop_ratio}")
        self.drop_ratio = drop_ratio

    def acts_on(self, group: int) -> bool:
        return group == 0

    def num_kept(self, num_patches: int) -> int:
        return max(1, num_patches - int(math.floor(self.drop_ratio * num_patches + 0.5)))

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode not in MODES:
            raise ValueError(f"unknown policy mode {mode!r}; expected one of {MODES}")
        if mode == "keep_all":
            return torch.ones_like(scores, dtype=torch.bool)
        per_sample = scores.view(inp.batch, inp.num_patches)
        top = per_sample.topk(self.num_kept(inp.num_patches), dim=1).indices
        mask = torch.zeros_like(per_sample, dtype=torch.bool).scatter_(1, top, torch.ones_like(top, dtype=torch.bool))
        return mask.flatten()


class RandomPolicy(FixedRatioPolicy):
    """Random drop baseline: uniform random scores."""

    def score(self, inp: GroupInput) -> Tensor:
        return torch.rand(inp.tokens.shape[0], device=inp.tokens.device)


class AttentionPolicy(FixedRatioPolicy):
    """Raw-attention baseline: head-averaged class-token attention of block ``block`` of the backbone.

    The blocks before ``block`` first run on every token (the default, the paper's Block_1, costs one dense
    block more); the drop itself happens at the input, as for the other fixed-ratio policies. The policy sees
    only that attention map (``GroupInput.class_attention``), not the backbone.

    Args:
        drop_ratio: fraction of patch tokens dropped at the input.
        block: 0-based index of the block whose class-token attention scores the patches.
    """

    def __init__(self, drop_ratio: float, block: int = PAPER_ATTENTION_BLOCK) -> None:
        super().__init__(drop_ratio)
        if block < 0:
            raise ValueError(f"block must be a 0-based block index, got {block}")
        self.block = block

    @torch.no_grad()
    def score(self, inp: GroupInput) -> Tensor:
        return _normalise(inp.class_attention(self.block)).flatten()


class TemporalDiffPolicy(FixedRatioPolicy):
    """Temporal-difference baseline: L2 distance of a patch token to the same position at t-1 (t=0 vs zeros)."""

    def score(self, inp: GroupInput) -> Tensor:
        return temporal_difference(inp.embedded, inp.batch).flatten()


def temporal_difference(emb: Embedded, batch: int) -> Tensor:
    """``(B, N)`` temporal-difference scores: each patch embedding's L2 distance to the same patch's one frame
    earlier (the first frame's to zeros), each row scaled to [0, 1] by its maximum."""
    frames, h, w = emb.grid
    tokens = emb.raw.view(batch, frames, h * w, -1)
    previous = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1)
    return _normalise((tokens - previous).norm(dim=-1).flatten(1))


def _normalise(values: Tensor) -> Tensor:
    """Scale each row to [0, 1] by its maximum (order preserved, heatmap-friendly)."""
    return values / values.amax(dim=1, keepdim=True).clamp_min(1e-12)


def attention_policy_macs(backbone: Backbone, num_tokens: Count, block_index: int = 0) -> Count:
    """Raw-attention baseline at ``blocks[block_index]``: the blocks before it on all tokens, then its ``norm1``
    and ``qkv`` on all tokens and the class-query logits (``L * C``)."""
    blocks = cast(Sequence[Block], backbone.blocks)  # the raw-attention baseline runs on timm blocks
    earlier = sum(timm_block_macs(b, num_tokens) for b in blocks[:block_index])
    block = blocks[block_index]
    qkv = block_attention(block).qkv
    dim = qkv.in_features
    scoring = norm_macs(block.norm1, num_tokens) + num_tokens * linear_macs(qkv) + num_tokens * dim
    return earlier + scoring


class FixedRatio(Method):
    """A fixed-ratio drop at the input (group 0) by the scores of ``policy_type``."""

    synthetic_config, config_nodes = "random", ("DROP",)
    knob = Knob("DROP.RATIO", 0.0, 0.95)

    def __init__(self, name: str, label: str, policy_type: type[FixedRatioPolicy], needs_video: bool = False) -> None:
        self.name, self.label, self.policy_type, self.needs_video = name, label, policy_type, needs_video
        super().__init__()

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return self.policy_type(drop_ratio)

    def stages(self, plan: StagePlan) -> list[Stage]:
        """Fine-tuning as IA-RED^2's backbone stage of the input group (Alg. 1): the blocks, final norm and head
        train; the patch, positional and time embeddings and the class token stay frozen."""
        return [Stage("backbone", 0, plan.max_epoch)] if plan.max_epoch > 0 else []

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return PolicyModel(backbone, self.policy(cfg, cfg.DROP.RATIO), cfg.IARED.NUM_GROUPS)

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
        model = PolicyModel(bench.backbone, self.policy(bench.cfg, 1.0 - keep_ratio), bench.num_groups)
        return [Variant(f"{self.label}@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio)]


class RawAttention(FixedRatio):
    """The raw-attention baseline: its scoring runs the blocks before ``DROP.ATTENTION_BLOCK`` on every token."""

    joint_attention_only = True

    def policy(self, cfg: CfgNode, drop_ratio: float) -> FixedRatioPolicy:
        return AttentionPolicy(drop_ratio, cfg.DROP.ATTENTION_BLOCK)

    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        iared = cast(PolicyModel, model)
        return attention_policy_macs(iared.backbone, num_scored + num_prefix, cast(AttentionPolicy, iared.policy).block)


register(FixedRatio("drop_random", "random", RandomPolicy))
register(RawAttention("drop_attention", "attention", AttentionPolicy))
register(FixedRatio("drop_temporal_diff", "temporal_diff", TemporalDiffPolicy, needs_video=True))
