"""EViT (Liang et al., "Not All Patches are What You Need: Expediting Vision Transformers via Token
Reorganizations", ICLR 2022), written from the paper (conventions checked against youweiliang/evit).

At the blocks in ``EVIT.LOCATIONS`` (default: a quarter, a half and three quarters of the depth, [3, 6, 9] on
12 blocks as in the paper, [1, 3, 4] on 6), between attention and MLP, the non-class tokens are reorganised:

* attentiveness of token i: the class token's attention to it in this block, averaged over heads
  (``a_i``, the softmax row of the class query over every key, class token included);
* the ``ceil(kappa * n)`` most attentive of the ``n`` non-class tokens are kept (``kappa``: the keep rate),
  most attentive first as in the reference code (the order changes no output: nothing after depends on it);
* the others are fused into one token ``x_fused = sum_i a_i x_i`` over the inattentive tokens (the paper's
  "weighted average" by attentiveness; the weights are the attention values themselves, which sum to less
  than 1, as in the official code). In later reorganisations the fused token is a token like the others.

With ``EVIT.FUSE_TOKEN False`` the inattentive tokens are dropped instead (the paper's ablation). EViT adds
no parameters: it runs off the shelf on dense weights and is fine-tuned with cross-entropy in one
``"train"`` stage (the paper fine-tunes with the reorganisation in place).

Scores (heatmaps): the attentiveness of each patch still a token of its own at a reorganising block.
FLOPs: attention half on the tokens entering the block, MLP half on the tokens left, plus the class-query
logits ``L C`` and the fusion ``(n - k) C``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from fvcore.common.config import CfgNode
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import BenchContext, Knob, Method, Variant, resolve_locations
from iared_video.models.backbones import Backbone
from iared_video.models.reduction import ReducerState, ReducingViT, TokenReducer, reducing_gmacs_per_sample
from iared_video.models.token_ops import Attended, block_attention

__all__ = ["EViT", "EViTReducer", "attentive_count", "reorganize"]


def attentive_count(keep_rate: float, num_tokens: int) -> int:
    """Tokens kept at a reorganisation: ``ceil(kappa * n)`` of the ``n`` non-class tokens (at least 1)."""
    return max(1, min(int(num_tokens), math.ceil(keep_rate * int(num_tokens))))


def reorganize(x: Tensor, attentiveness: Tensor, keep: int, fuse: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``keep`` most attentive tokens (most attentive first, the reference's order) and fuse the rest.

    Args:
        x: ``(B, n, C)`` non-class tokens.
        attentiveness: ``(B, n)`` class attention ``a_i``.
        keep: k.
        fuse: append ``sum_i a_i x_i`` over the inattentive tokens (else drop them).

    Returns:
        the ``(B, k [+ 1], C)`` tokens, the ``(B, k)`` indices kept (in the tokens' order) and the ``(B, n - k)``
        indices fused.
    """
    parts, kept, rest = _reorganize_parts(x, attentiveness, keep, fuse)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0], kept, rest


def _reorganize_parts(x: Tensor, attentiveness: Tensor, keep: int,
                      fuse: bool) -> tuple[list[Tensor], Tensor, Tensor]:
    """``reorganize`` with the tokens as ``[kept, fused]`` parts (the caller concatenates them once)."""
    order = attentiveness.argsort(dim=1, descending=True, stable=True)  # one sort gives both sets
    kept, rest = order[:, :keep], order[:, keep:]
    dim = x.shape[-1]
    parts = [x.gather(1, kept[..., None].expand(-1, -1, dim))]
    if fuse and rest.shape[1]:
        weights = attentiveness.gather(1, rest).to(x.dtype)[:, None]  # (B, 1, n - k)
        parts.append(torch.bmm(weights, x.gather(1, rest[..., None].expand(-1, -1, dim))))  # (n - k) C MACs
    return parts, kept, rest


class EViTReducer(TokenReducer):
    """EViT's token reorganisation at ``locations`` with keep rate ``keep_rate``.

    Args:
        keep_rate: kappa in (0, 1] (1: nothing changes).
        locations: 0-based blocks that reorganise.
        fuse: fuse the inattentive tokens into one (else drop them).
    """

    needs_class_attention = True

    def __init__(self, keep_rate: float, locations: Sequence[int], fuse: bool = True) -> None:
        super().__init__()
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"EViT keep rate must lie in (0, 1], got {keep_rate}")
        self.keep_rate, self.locations, self.fuse = float(keep_rate), sorted(int(i) for i in locations), fuse

    def acts_on(self, layer: int) -> bool:
        return self.keep_rate < 1.0 and layer in self.locations

    def reduce(self, layer: int, state: ReducerState, attended: Attended) -> Tensor | None:
        assert attended.class_attention is not None  # needs_class_attention: the block returned its class row
        attentiveness = attended.class_attention.mean(dim=1)[:, state.num_prefix:]  # head-averaged a_i
        scores = state.scatter(attentiveness) if state.record else None
        num = attentiveness.shape[1]
        keep = attentive_count(self.keep_rate, num)
        if keep == num:
            return scores
        parts, kept, rest = _reorganize_parts(state.patches, attentiveness, keep, self.fuse)
        fused = len(parts) > 1  # the fused token stands for no single patch
        origin = size = None
        if state.origin is not None:
            origin = state.origin.gather(1, kept)
            origin = torch.cat([origin, origin.new_full((origin.shape[0], 1), -1)], dim=1) if fused else origin
        if state.size is not None or state.record:  # sizes are bookkeeping here: tracked with the origins
            sizes = state.sizes()
            size = sizes.gather(1, kept)
            size = torch.cat([size, sizes.gather(1, rest).sum(1, keepdim=True)], dim=1) if fused else size
        state.set_patches(parts, origin, size)
        return scores

    def macs(self, layer: int, num_tokens: Tensor, num_prefix: int, block: Block) -> Tensor:
        """Class-query logits over every key (``(n + P) C``) and the fusion (``(n - k) C``)."""
        dim = block_attention(block).qkv.in_features
        kept = torch.clamp(torch.minimum(torch.ceil(self.keep_rate * num_tokens), num_tokens), min=1)
        fused = (num_tokens - kept) * dim if self.fuse else torch.zeros_like(num_tokens)
        return (num_tokens + num_prefix) * dim + fused


def _locations(cfg: CfgNode, depth: int) -> list[int]:
    """``EVIT.LOCATIONS``, or for ``[]`` a quarter, a half and three quarters of the depth (``depth_quarters``)."""
    return resolve_locations(cfg.EVIT.LOCATIONS, depth)


class EViT(Method):
    """Keep the top-k tokens by class attention, fuse the rest, at a few blocks."""

    name, policy_type, training_free, joint_attention_only = "evit", EViTReducer, True, True
    config_nodes = ("EVIT",)
    knob = Knob("EVIT.KEEP_RATE", 0.05, 1.0, cost_rises=True)

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        e = cfg.EVIT
        return ReducingViT(backbone, EViTReducer(e.KEEP_RATE, _locations(cfg, len(backbone.blocks)), e.FUSE_TOKEN))

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        e, errors = cfg.EVIT, []
        locs = _locations(cfg, depth)
        if not 0.0 < e.KEEP_RATE <= 1.0:
            errors.append(f"EVIT.KEEP_RATE must lie in (0, 1], got {e.KEEP_RATE}")
        if selected and (not locs or locs != sorted(set(locs)) or locs[0] < 0 or locs[-1] >= depth):
            errors.append(f"EVIT.LOCATIONS must increase strictly within [0, {depth}), got {locs}")
        return errors

    def gmacs_per_sample(self, model, tokens, num_patches, modes) -> Tensor:
        return reducing_gmacs_per_sample(model, tokens, num_patches, modes)

    def matched_opts(self, cfg: CfgNode, drop_ratio: float) -> list[str]:
        """The keep rate whose reorganisations remove about ``drop_ratio`` of the patch tokens in all."""
        from iared_video.config import model_depth_and_patch

        rate = max(1.0 - drop_ratio, 1e-3) ** (1.0 / len(_locations(cfg, model_depth_and_patch(cfg)[0])))
        return ["EVIT.KEEP_RATE", repr(round(rate, 4))]

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        if keep_ratio is None:  # as configured: EVIT.KEEP_RATE at EVIT.LOCATIONS
            rate = bench.cfg.EVIT.KEEP_RATE
            return [Variant(f"evit@rate={rate:g}", self.build(bench.cfg, bench.backbone), self.name,
                            info={"keep_rate": rate})]
        locations = _locations(bench.cfg, len(bench.backbone.blocks))
        rate = keep_ratio ** (1.0 / len(locations))
        model = ReducingViT(bench.backbone, EViTReducer(rate, locations, bench.cfg.EVIT.FUSE_TOKEN))
        return [Variant(f"evit@keep={keep_ratio:g}", model, self.name, keep_target=keep_ratio,
                        info={"keep_rate": rate})]


register(EViT())
