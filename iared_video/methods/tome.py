"""ToMe (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023), written from the paper.

In every block, between attention and MLP, ``r`` patch tokens are merged away by bipartite soft matching:

1. split the tokens alternately into sets A (even positions) and B (odd positions);
2. join each token of A to its most similar token of B, by cosine similarity of the attention keys
   (averaged over heads);
3. keep the ``r`` most similar joins;
4. merge each joined A token into its B token as the size-weighted mean ``sum_i s_i x_i / sum_i s_i``, the
   size ``s`` being the number of input patches a token stands for (sizes add up);
5. the tokens left are ``[unjoined A tokens, every B token]``, each set in its order (the reference code's
   order: the next block's A/B alternation runs over this order).

The kept set is built from a few gathers, one scatter-reduce into B (and one on the sizes) and one concatenation
(no clone of the token tensor, no per-block compaction sort); nothing beyond the merge is tracked unless the
forward records its policy (``return_policy``).
The alternation runs over the patch tokens only (A = patches 0, 2, 4, ...), the prefix tokens taking no part;
the reference code alternates over the whole sequence with the class token in A, excluded by a -inf score,
which puts the first patch in B instead.

Proportional attention adds ``log s`` of each key to the attention logits, so that a token standing for s
patches is attended as s copies of it would be. Class (and distillation) tokens never merge; on a JointST
TimeSformer every patch token of every frame takes part. ToMe needs no training (``r`` is set at test time)
and fine-tunes with cross-entropy through the usual ``"train"`` stage.

FLOPs: the attention half of block l on the tokens entering it, the MLP half on ``r`` fewer, plus the
similarity matmul ``|A| |B| d_head``; normalising, averaging and merging are element-wise (free in
fvcore's convention, as everywhere in ``models/flops.py``).

Knobs: ``TOME.R`` (tokens merged per block), ``TOME.R_PER_LAYER`` (a schedule, one per block),
``TOME.PROP_ATTN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Knob, Method, Variant
from iared_video.models.backbones import Backbone
from iared_video.models.reduction import ReducerState, ReducingViT, TokenReducer, reducing_gmacs_per_sample
from iared_video.models.token_ops import Attended, block_attention

__all__ = ["Matching", "ToMe", "ToMeReducer", "bipartite_soft_matching", "merge_wavg", "merged_order",
           "tokens_merged"]


def tokens_merged(r: int, num_tokens: int) -> int:
    """Tokens one block merges away: ``r``, at most half of the ``num_tokens`` patch tokens (set B's size)."""
    return max(0, min(int(r), int(num_tokens) // 2))


class Matching(NamedTuple):
    """Bipartite soft matching of one block: positions in set A (``0, 2, 4, ...``) and set B (``1, 3, 5, ...``).

    Attributes:
        unmerged: ``(B, |A| - r)`` A positions that stay, in their order.
        src: ``(B, r)`` A positions merged away, most similar first.
        dst: ``(B, r)`` B position each of them merges into.
    """

    unmerged: Tensor
    src: Tensor
    dst: Tensor


def bipartite_soft_matching(metric: Tensor, r: int) -> Matching:
    """Which tokens merge: each A token's most similar B token; the ``r`` most similar of these joins merge.

    Args:
        metric: ``(B, n, d)`` features compared by cosine similarity (ToMe: the keys, averaged over heads).
        r: joins to keep (at most ``n // 2``).
    """
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    similarity = torch.bmm(metric[:, 0::2], metric[:, 1::2].transpose(1, 2))  # (B, |A|, |B|)
    best, best_dst = similarity.max(dim=-1)
    order = best.argsort(dim=-1, descending=True, stable=True)
    src = order[:, :r]
    return Matching(order[:, r:].sort(dim=-1).values, src, best_dst.gather(1, src))


def _head_sum(keys: Tensor) -> Tensor:
    """``(B, n, H, d)`` keys summed over heads: H times their head average, the same cosine similarities.

    One add per head: on the strided view of the fused qkv output this runs several times faster than a
    reduction over the head axis (``mean(dim=2)``), which walks the heads innermost.
    """
    total = keys[:, :, 0]
    for head in range(1, keys.shape[2]):
        total = total + keys[:, :, head]
    return total


def _rows(index: Tensor, dim: int) -> Tensor:
    """``(B, k)`` token index -> ``(B, k, dim)`` gather/scatter index."""
    return index[..., None].expand(-1, -1, dim)


def merge_wavg(x: Tensor, size: Tensor | None, match: Matching) -> tuple[Tensor, Tensor]:
    """Merge A tokens ``match.src`` into B tokens ``match.dst`` by size-weighted mean ``sum s_i x_i / sum s_i``.

    Args:
        x: ``(B, n, C)`` tokens.
        size: ``(B, n)`` their sizes; None when every token stands for one patch.
        match: from ``bipartite_soft_matching``.

    Returns:
        the ``(B, n - r, C)`` tokens left, ``[unmerged A tokens, every B token]`` (ToMe's order), and their sizes.
    """
    parts, sizes = _merge_parts(x, size, match)
    return torch.cat(parts, dim=1), sizes


def _merge_parts(x: Tensor, size: Tensor | None, match: Matching) -> tuple[list[Tensor], Tensor]:
    """``merge_wavg`` with the tokens left as ``[unmerged A, B]`` parts (the caller concatenates them once)."""
    dim = x.shape[-1]
    x_a, x_b = x[:, 0::2], x[:, 1::2]
    src_x = x_a.gather(1, _rows(match.src, dim))
    unmerged = x_a.gather(1, _rows(match.unmerged, dim))
    if size is None:  # unit sizes: the weighted mean is the plain mean of each B token and its sources
        merged = x_b.scatter_reduce(1, _rows(match.dst, dim), src_x, "mean", include_self=True)
        ones = x.new_ones(x.shape[0], x.shape[1] - match.src.shape[1])
        b_size = ones[:, unmerged.shape[1]:].scatter_add(1, match.dst, ones[:, :match.src.shape[1]])
        return [unmerged, merged], torch.cat([ones[:, :unmerged.shape[1]], b_size], dim=1)
    a_size, b_size = size[:, 0::2], size[:, 1::2]
    src_size = a_size.gather(1, match.src)
    total = (x_b * b_size[..., None]).scatter_add(1, _rows(match.dst, dim), src_x * src_size[..., None])
    b_size = b_size.scatter_add(1, match.dst, src_size)
    sizes = torch.cat([a_size.gather(1, match.unmerged), b_size], dim=1)
    return [unmerged, total / b_size[..., None]], sizes


def merged_order(values: Tensor, match: Matching) -> Tensor:
    """Per-token ``(B, n)`` values (e.g. origins) in the order ``merge_wavg`` leaves the tokens in."""
    return torch.cat([values[:, 0::2].gather(1, match.unmerged), values[:, 1::2]], dim=1)


class ToMeReducer(TokenReducer):
    """ToMe between attention and MLP of every block with ``r_l > 0``.

    Args:
        r: tokens merged in each block (``r_l``), one value per block.
        prop_attn: proportional attention (``+ log s`` on the keys' logits).
    """

    needs_keys = True

    def __init__(self, r: Sequence[int], prop_attn: bool = True) -> None:
        super().__init__()
        if any(int(v) < 0 for v in r):
            raise ValueError(f"ToMe r must be >= 0 per block, got {list(r)}")
        self.r, self.prop_attn = [int(v) for v in r], prop_attn

    def acts_on(self, layer: int) -> bool:
        return self.r[layer] > 0

    def key_bias(self, state: ReducerState) -> Tensor | None:
        """``log s`` per key (0 on prefix tokens), once any token stands for more than one patch."""
        if not self.prop_attn or state.size is None:
            return None
        return F.pad(state.size.log(), (state.num_prefix, 0))

    def reduce(self, layer: int, state: ReducerState, attended: Attended) -> None:
        batch, length = state.x.shape[:2]
        num = length - state.num_prefix
        r = tokens_merged(self.r[layer], num)
        if r == 0:
            return None
        assert attended.keys is not None  # needs_keys: the block returned its keys
        keys = attended.keys.view(batch, length, *attended.keys.shape[1:])[:, state.num_prefix:]
        match = bipartite_soft_matching(_head_sum(keys), r)  # keys averaged over heads (up to the factor H)
        parts, sizes = _merge_parts(state.patches, state.size, match)
        origin = None if state.origin is None else merged_order(state.origin, match)
        state.set_patches(parts, origin, sizes)
        return None

    def macs(self, layer: int, num_tokens: Tensor, num_prefix: int, block: Block) -> Tensor:
        """The cosine-similarity matmul ``|A| |B| d_head`` (0 where nothing merges)."""
        set_a, set_b = torch.floor((num_tokens + 1) / 2), torch.floor(num_tokens / 2)
        merging = torch.minimum(set_b, torch.full_like(set_b, self.r[layer])) > 0
        return torch.where(merging, set_a * set_b * block_attention(block).head_dim, torch.zeros_like(set_a))


def _depth_and_patches(cfg: CfgNode) -> tuple[int, int]:
    """Blocks of the configured backbone and patch tokens of a test view."""
    from iared_video.config import is_video, model_depth_and_patch

    depth, patch = model_depth_and_patch(cfg)
    frames = cfg.DATA.NUM_FRAMES if is_video(cfg) else 1
    return depth, frames * (cfg.DATA.TEST_CROP_SIZE // patch) ** 2


def schedule(cfg: CfgNode, depth: int) -> list[int]:
    """``r_l`` per block: ``TOME.R_PER_LAYER`` if given, else ``TOME.R`` in every block."""
    per_layer = list(cfg.TOME.R_PER_LAYER)
    return [int(v) for v in per_layer] if per_layer else [int(cfg.TOME.R)] * depth


class ToMe(Method):
    """Token merging: training-free, fine-tunes with cross-entropy."""

    name, policy_type, has_scores, training_free, joint_attention_only = "tome", ToMeReducer, False, True, True
    config_nodes = ("TOME",)
    knob = Knob("TOME.R", 0, 1024, integer=True, with_opts=("TOME.R_PER_LAYER", "[]"))

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return ReducingViT(backbone, ToMeReducer(schedule(cfg, len(backbone.blocks)), cfg.TOME.PROP_ATTN))

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        errors, per_layer = [], list(cfg.TOME.R_PER_LAYER)
        if cfg.TOME.R < 0:
            errors.append(f"TOME.R must be >= 0, got {cfg.TOME.R}")
        if per_layer and (len(per_layer) != depth or any(not isinstance(v, int) or v < 0 for v in per_layer)):
            errors.append(f"TOME.R_PER_LAYER must list {depth} integers >= 0 (one per block) or be [], got {per_layer}")
        return errors

    def gmacs_per_sample(self, model, tokens, num_patches, modes) -> Tensor:
        return reducing_gmacs_per_sample(model, tokens, num_patches, modes)

    def matched_opts(self, cfg: CfgNode, drop_ratio: float) -> list[str]:
        """The constant ``r`` that merges away about ``drop_ratio`` of the patch tokens by the last block."""
        depth, num = _depth_and_patches(cfg)
        return ["TOME.R", str(round(drop_ratio * num / depth)), "TOME.R_PER_LAYER", "[]"]

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        if keep_ratio is None:  # as configured: TOME.R (or R_PER_LAYER)
            per_block = schedule(bench.cfg, len(bench.backbone.blocks))
            name = f"tome@r={per_block[0]}" if len(set(per_block)) == 1 else "tome@r_per_layer"
            return [Variant(name, self.build(bench.cfg, bench.backbone), self.name, info={"r": per_block})]
        depth, num = _depth_and_patches(bench.cfg)
        r = round((1.0 - keep_ratio) * num / depth)
        model = ReducingViT(bench.backbone, ToMeReducer([r] * depth, bench.cfg.TOME.PROP_ATTN))
        return [Variant(f"tome@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio, info={"r": r})]


register(ToMe())
