"""Video and image transforms on torchvision.transforms.v2 (video) and timm (images).

Video clips enter as uint8 ``(T, H, W, 3)`` arrays and leave as normalised float
``(C, T, H, W)`` tensors (PySlowFast layout). Train: short side resized to a
random size in the jitter range, random square crop, random horizontal flip.
Test/val: short side resized to the crop size, then one of 1 or 3 square crops
along the long side (left/centre/right on landscape frames, top/centre/bottom
on portrait ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors

__all__ = [
    "UniformCrop",
    "crop_offsets",
    "frames_to_video",
    "video_train_transform",
    "video_test_transform",
    "apply_video_transform",
    "image_transform",
]


def crop_offsets(height: int, width: int, size: int, spatial_idx: int) -> tuple[int, int]:
    """Top-left corner of crop ``spatial_idx`` (0, 1, 2) of a ``size`` square.

    Index 1 is the centre; 0 and 2 are the two ends of the long side (left/right for
    landscape frames, top/bottom for portrait ones). Square frames give the centre for all.
    """
    if not 0 <= spatial_idx <= 2:
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop size {size}")
    top, left = (height - size) // 2, (width - size) // 2
    if width > height:
        left = (0, left, width - size)[spatial_idx]
    elif height > width:
        top = (0, top, height - size)[spatial_idx]
    return top, left


class UniformCrop(v2.Transform):
    """Square crop at a fixed position along the long side: 0 = start, 1 = centre, 2 = end."""

    def __init__(self, size: int, spatial_idx: int = 1) -> None:
        super().__init__()
        self.size, self.spatial_idx = size, spatial_idx

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        top, left = crop_offsets(height, width, self.size, self.spatial_idx)
        return {"top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(TF.crop, inpt, params["top"], params["left"], self.size, self.size)


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def video_train_transform(
    jitter_scales: Sequence[int], crop_size: int, flip: bool, mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    """Short-side jitter in ``[min, max]`` (inclusive), random crop, optional flip, normalise."""
    low, high = int(jitter_scales[0]), int(jitter_scales[1])
    if not crop_size <= low <= high:
        raise ValueError(f"jitter scales {jitter_scales} must satisfy crop size {crop_size} <= min <= max")
    steps: list[v2.Transform] = [v2.RandomResize(low, high + 1), v2.RandomCrop(crop_size)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _normalize(mean, std))


def video_test_transform(
    crop_size: int, spatial_idx: int, mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    """Short side to ``crop_size``, crop ``spatial_idx`` (see ``crop_offsets``), normalise."""
    return v2.Compose([v2.Resize(crop_size), UniformCrop(crop_size, spatial_idx)] + _normalize(mean, std))


def frames_to_video(frames: np.ndarray) -> tv_tensors.Video:
    """uint8 ``(T, H, W, 3)`` array -> ``tv_tensors.Video`` ``(T, 3, H, W)``."""
    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))


def apply_video_transform(frames: np.ndarray, transform: v2.Transform) -> torch.Tensor:
    """Run ``transform`` on a decoded clip; returns a plain float tensor ``(C, T, H, W)``."""
    video = transform(frames_to_video(frames))
    return video.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


def image_transform(
    is_training: bool,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    auto_augment: str = "",
    color_jitter: float = 0.0,
    re_prob: float = 0.0,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    scale: Sequence[float] = (0.08, 1.0),
    hflip: bool = True,
) -> Any:
    """DeiT-style image transform from timm's ``create_transform`` (PIL RGB in, ``(C, H, W)`` out).

    Train: RandomResizedCrop over ``scale`` of the area, horizontal flip (``hflip``), optional
    RandAugment (``auto_augment``, e.g. "rand-m9-mstd0.5-inc1"; "" disables it), colour jitter,
    random erasing. Eval: resize to ``input_size / crop_pct`` and centre crop ``input_size``
    (256 -> 224 at the default crop_pct).
    """
    from timm.data import create_transform

    kwargs: dict[str, Any] = dict(interpolation=interpolation, mean=tuple(mean), std=tuple(std))
    if is_training:
        return create_transform(
            input_size, is_training=True, hflip=0.5 if hflip else 0.0, auto_augment=auto_augment or None,
            scale=tuple(scale),  # type: ignore[arg-type]  # timm's hint is tuple[float, float]
            color_jitter=color_jitter or None,  # type: ignore[arg-type]  # timm takes None (no jitter); its hint not
            re_prob=re_prob, **kwargs,
        )
    return create_transform(input_size, is_training=False, crop_pct=crop_pct, **kwargs)
