"""Divided space-time attention (TimeSformer's ``divided_space_time``) on packed token sets.

The block of every released TimeSformer checkpoint (facebookresearch/TimeSformer, ``vit.py``), on the
class token ``c`` and the patch tokens ``x``:

* temporal: ``x' = x + temporal_fc(TAttn(temporal_norm1(x)))``, attention over the frames of each
  spatial position (patch tokens only);
* spatial: for each frame ``t``, ``s_t = Attn(norm1([c, x'_t]))`` with ``x'_t`` the frame's patch tokens
  and ``c`` a copy of the class token; ``x'' = x' + s_t[patches]``, ``c' = c + mean_t s_t[class]``;
* MLP: ``z = y + MLP(norm2(y))`` on every token ``y`` of ``[c', x'']``.

After a token drop, the sequences hold only the kept tokens: a temporal sequence is the kept tokens of
one spatial position across frames (positions with none kept have no sequence), a spatial sequence the
kept tokens of one frame plus that frame's copy of the class token (every frame has one, so the class
token always averages over all T frames). Both kinds are packed variable-length segments for
``packed_attention``; the per-token layers run once on the packed tensor, nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import Tensor, nn

from iared_video.models.packed import PackedSeqs
from iared_video.models.token_ops import packed_attention, packed_drop_path

__all__ = ["ATTENTION_TYPES", "DividedBlock", "DividedLayout", "packed_divided_block"]

ATTENTION_TYPES = ("joint_space_time", "divided_space_time")


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time block with the official parameter names.

    Args:
        dim, num_heads, mlp_ratio, qkv_bias: block shape (TimeSformer uses ``qkv_bias=True``).
        drop_path: stochastic depth rate; drawn per temporal sequence, per frame and per sample for the
            three residuals, as the official code's ``DropPath`` on its rearranged batches does.
        norm_eps: LayerNorm epsilon (1e-6 in TimeSformer).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.temporal_norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.temporal_attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_prob = drop_path

    def forward(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Dense ``(B, 1 + N, C)`` tokens (class token first, patches in the order of ``backbones.py``)."""
        batch, length, dim = x.shape
        seqs = PackedSeqs.from_lengths([length] * batch, x.device)
        origin = torch.arange(batch * (length - 1), device=x.device)
        layout = DividedLayout.build(origin, batch, grid, seqs)
        packed = packed_divided_block(self, rearrange(x, "b l c -> (b l) c"), seqs, layout)
        return rearrange(packed, "(b l) c -> b l c", b=batch)


@dataclass
class DividedLayout:
    """Where the temporal and spatial sequences of a packed ``[class, kept patches]`` tensor lie.

    Built once per group (the kept set is fixed between drops) and shared by the group's blocks.

    Attributes:
        temporal_rows: ``(T_patch,)`` packed rows of the patch tokens, by (sample, spatial position, frame).
        temporal: one sequence per (sample, spatial position) that kept a token.
        spatial_rows: ``(B * T + T_patch,)`` packed rows, per (sample, frame): the sample's class token,
            then the frame's kept patch tokens by position.
        spatial: one sequence per (sample, frame), ``1 + kept`` tokens long.
        spatial_weight: ``(B * T + T_patch,)`` ``1 / T`` on class-token copies (their residuals are
            averaged over frames), 1 on patch tokens.
    """

    temporal_rows: Tensor
    temporal: PackedSeqs
    spatial_rows: Tensor
    spatial: PackedSeqs
    spatial_weight: Tensor

    @classmethod
    def build(cls, origin: Tensor, batch: int, grid: tuple[int, int, int], seqs: PackedSeqs) -> DividedLayout:
        """Layout of the packed tokens of ``seqs`` (one class token then the kept patches per sample).

        Args:
            origin: ``(T_patch,)`` flat index ``b * N + n`` of each kept patch token, ascending (the
                packed order of ``policy_model._TokenState``), ``n = t * h * w + y * w + x``.
            batch: B.
            grid: ``(T, h, w)`` patch grid.
            seqs: the per-sample sequences of the packed tensor.
        """
        frames, h, w = grid
        area = h * w
        sample = origin // (frames * area)
        frame_seg, position = origin // area, origin % area  # frame_seg = b * T + t
        patch_rows = torch.arange(origin.numel(), device=origin.device) + sample + 1
        temporal_seg = sample * area + position
        temporal_order = torch.argsort(temporal_seg * frames + frame_seg % frames)
        counts = torch.cat([torch.bincount(temporal_seg, minlength=batch * area),
                            torch.bincount(frame_seg, minlength=batch * frames)])
        host = counts.tolist()  # the layout's one host sync
        temporal = PackedSeqs.from_lengths([n for n in host[:batch * area] if n], origin.device)
        spatial = PackedSeqs.from_lengths([1 + n for n in host[batch * area:]], origin.device)
        rows, weight = _spatial_rows(patch_rows, frame_seg, counts[batch * area:], seqs, frames)
        return cls(patch_rows[temporal_order], temporal, rows, spatial, weight)


def _spatial_rows(patch_rows: Tensor, frame_seg: Tensor, per_frame: Tensor, seqs: PackedSeqs,
                  frames: int) -> tuple[Tensor, Tensor]:
    """Rows of the spatial sequences and their residual weights (see ``DividedLayout``).

    Patches arrive sorted by (sample, frame, position); patch ``j`` of frame segment ``f`` follows the
    ``f + 1`` class-token copies that open segments ``0..f``, so it sits at ``j + f + 1``.
    """
    num_segments = per_frame.numel()
    segment = torch.arange(num_segments, device=patch_rows.device)
    cls_at = torch.cumsum(per_frame, 0) - per_frame + segment
    patch_at = torch.arange(patch_rows.numel(), device=patch_rows.device) + frame_seg + 1
    rows = patch_rows.new_empty(num_segments + patch_rows.numel())
    rows[cls_at] = seqs.cu_seqlens[:-1].long().repeat_interleave(frames)
    rows[patch_at] = patch_rows
    weight = torch.ones(rows.numel(), device=rows.device)
    weight[cls_at] = 1.0 / frames
    return rows, weight


def packed_divided_block(block: DividedBlock, x: Tensor, seqs: PackedSeqs, layout: DividedLayout) -> Tensor:
    """A ``DividedBlock`` on packed ``(T, C)`` tokens (one class token then kept patches per sample)."""
    rate, training = block.drop_prob, block.training
    tokens = block.temporal_norm1(x[layout.temporal_rows])
    y = packed_attention(block.temporal_attn, tokens, layout.temporal)
    y = block.temporal_fc(packed_drop_path(y, rate, training, layout.temporal))
    x = x.index_add(0, layout.temporal_rows, y.to(x.dtype))
    y = packed_attention(block.attn, block.norm1(x[layout.spatial_rows]), layout.spatial)
    y = packed_drop_path(y, rate, training, layout.spatial) * layout.spatial_weight[:, None]
    x = x.index_add(0, layout.spatial_rows, y.to(x.dtype))
    y = block.mlp(block.norm2(x))
    return x + packed_drop_path(y, rate, training, seqs)
