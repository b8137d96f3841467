"""Informative-score heatmaps: per-group scores on the patch grid, upsampled to the input.

Patch-token order is the backbone's: ``n = t * (h * w) + y * w + x`` (images: ``T = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from iared_video.config.choices import UPSAMPLE_MODES  # listed once, with the config keys

__all__ = ["UPSAMPLE_MODES", "tokens_to_grid", "upsample_grid", "policy_heatmaps", "keep_masks"]


def tokens_to_grid(values: Tensor, grid: Sequence[int]) -> Tensor:
    """Rearrange per-token values ``(B, N)`` to ``(B, T, h, w)`` in the backbone's token order."""
    frames, h, w = (int(g) for g in grid)
    if values.ndim != 2 or values.shape[1] != frames * h * w:
        raise ValueError(f"expected (B, {frames * h * w}) values for grid {tuple(grid)}, got {tuple(values.shape)}")
    return rearrange(values, "b (t h w) -> b t h w", t=frames, h=h, w=w)


def upsample_grid(maps: Tensor, size: Sequence[int], mode: str = "nearest") -> Tensor:
    """Upsample ``(B, T, h, w)`` patch maps frame by frame to ``(B, T, H, W)``.

    Args:
        maps: per-patch values.
        size: ``(H, W)`` of the model input.
        mode: ``"nearest"`` (each patch paints exactly its pixels) or ``"bilinear"`` (smooth).
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    # frames act as channels, so interpolation never mixes time steps
    return F.interpolate(maps.float(), size=tuple(int(s) for s in size), mode=mode, **kwargs)


def policy_heatmaps(scores: Sequence[Tensor], grid: Sequence[int], size: Sequence[int],
                    mode: str = "nearest") -> Tensor:
    """Per-group informative-score heatmaps at the input resolution.

    Args:
        scores: D tensors ``(B, N)`` (``PolicyOutput.scores``; 0 where dropped earlier).
        grid: ``(T, h, w)`` patch grid (``PolicyOutput.grid``).
        size: ``(H, W)`` of the input frames.
        mode: upsampling, see ``upsample_grid``.

    Returns:
        ``(B, D, T, H, W)`` float maps.
    """
    if not scores:
        raise ValueError("need at least one group of scores")
    maps = [upsample_grid(tokens_to_grid(s.detach(), grid), size, mode) for s in scores]
    return torch.stack(maps, dim=1)


def keep_masks(keep: Sequence[Tensor], grid: Sequence[int], size: Sequence[int]) -> Tensor:
    """Kept-patch masks per group ``(B, D, T, H, W)`` bool (nearest upsampling of ``PolicyOutput.keep``)."""
    return policy_heatmaps([k.float() for k in keep], grid, size, "nearest") > 0.5
