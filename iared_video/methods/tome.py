"""ToMe (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023), written from the paper.

In every block, between attention and MLP, ``r`` patch tokens are merged away by bipartite soft matching:

1. split the tokens alternately into sets A (even positions) and B (odd positions);
2. join each token of A to its most similar token of B, by cosine similarity of the attention keys
   (averaged over heads);
3. keep the ``r`` most similar joins;
4. merge each joined A token into its B token as the size-weighted mean ``sum_i s_i x_i / sum_i s_i``, the
   size ``s`` being the number of input patches a token stands for (sizes add up);
5. the tokens left are the unjoined A tokens and every B token, in their order.

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

import torch
from fvcore.common.config import CfgNode
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Knob, Method, Variant
from iared_video.models.backbones import Backbone
from iared_video.models.reduction import ReducerState, ReducingViT, TokenReducer, reducing_gmacs_per_sample
from iared_video.models.token_ops import Attended, block_attention

__all__ = ["ToMe", "ToMeReducer", "bipartite_soft_matching", "merge_wavg", "tokens_merged"]


def tokens_merged(r: int, num_tokens: int) -> int:
    """Tokens one block merges away: ``r``, at most half of the ``num_tokens`` patch tokens (set B's size)."""
    return max(0, min(int(r), int(num_tokens) // 2))


def bipartite_soft_matching(metric: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Which tokens merge: ``(src, dst)``, each ``(B, r)``.

    Args:
        metric: ``(B, n, d)`` features compared by cosine similarity (ToMe: the keys, averaged over heads).
        r: joins to keep (at most ``n // 2``).

    Returns:
        ``src``: positions in set A (tokens ``0, 2, 4, ...``) of the A tokens merged away, most similar first;
        ``dst``: positions in set B (tokens ``1, 3, 5, ...``) of the B token each of them merges into.
    """
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    similarity = metric[:, 0::2] @ metric[:, 1::2].transpose(1, 2)  # (B, |A|, |B|)
    best, best_dst = similarity.max(dim=-1)
    src = best.argsort(dim=-1, descending=True, stable=True)[:, :r]
    return src, best_dst.gather(1, src)


def merge_wavg(x: Tensor, size: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Merge A tokens ``src`` into B tokens ``dst`` by size-weighted mean.

    Args:
        x: ``(B, n, C)`` tokens; size: ``(B, n)`` their sizes; src, dst: from ``bipartite_soft_matching``.

    Returns:
        the merged ``(B, n, C)`` tokens and sizes (merged-away tokens still in place), and the ``(B, n)`` bool
        mask of the tokens that remain.
    """
    a_size, b_size = size[:, 0::2], size[:, 1::2]
    src_size = a_size.gather(1, src)
    src_x = x[:, 0::2].gather(1, src[..., None].expand(-1, -1, x.shape[-1])) * src_size[..., None]
    index = dst[..., None].expand(-1, -1, x.shape[-1])
    b_total = (x[:, 1::2] * b_size[..., None]).scatter_add(1, index, src_x)
    b_size = b_size.scatter_add(1, dst, src_size)
    merged, sizes = x.clone(), size.clone()
    merged[:, 1::2], sizes[:, 1::2] = b_total / b_size[..., None], b_size
    remains = torch.ones_like(size, dtype=torch.bool)
    remains[:, 0::2] = remains[:, 0::2].scatter(1, src, torch.zeros_like(src, dtype=torch.bool))
    return merged, sizes, remains


def _compact(values: Tensor, remains: Tensor, count: int) -> Tensor:
    """The entries of ``(B, n, ...)`` ``values`` where ``remains``, in order (``count`` per sample)."""
    index = torch.argsort((~remains).to(torch.uint8), dim=1, stable=True)[:, :count]
    if values.ndim == 3:
        index = index[..., None].expand(-1, -1, values.shape[-1])
    return values.gather(1, index)


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
        if not self.prop_attn or not state.merged:
            return None
        prefix = state.size.new_zeros(state.size.shape[0], state.num_prefix)
        return torch.cat([prefix, state.size.log()], dim=1)

    def reduce(self, layer: int, state: ReducerState, attended: Attended) -> None:
        batch, length = state.x.shape[:2]
        num = length - state.num_prefix
        r = tokens_merged(self.r[layer], num)
        if r == 0:
            return None
        assert attended.keys is not None  # needs_keys: the block returned its keys
        keys = attended.keys.view(batch, length, *attended.keys.shape[1:])[:, state.num_prefix:]
        src, dst = bipartite_soft_matching(keys.mean(dim=2), r)  # keys averaged over heads
        merged, sizes, remains = merge_wavg(state.patches, state.size, src, dst)
        left = num - r
        state.set_patches(_compact(merged, remains, left), _compact(state.origin, remains, left),
                          _compact(sizes, remains, left))
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
    knob = Knob("TOME.R", 0, 1024, integer=True)

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
        if keep_ratio is None:
            return []
        depth, num = _depth_and_patches(bench.cfg)
        r = round((1.0 - keep_ratio) * num / depth)
        model = ReducingViT(bench.backbone, ToMeReducer([r] * depth, bench.cfg.TOME.PROP_ATTN))
        return [Variant(f"tome@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio, info={"r": r})]


register(ToMe())
