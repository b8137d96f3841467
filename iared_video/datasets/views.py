"""The test-view layer: decode + transform (+ masks) of one evaluation view of a video or an image.

One place for what the test split, the visualiser and the heatmap evaluation must agree on: which frames a
view decodes (``view_indices``: ``num_clips`` evenly spaced clips or segment offsets), how they are resized and cropped
(short side to the crop size, crop 0/1/2 along the long side), how images are resized and centre-cropped
(timm's eval transform), and how ground-truth masks follow the same geometry (nearest resampling).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode

from iared_video.datasets.decoder import DecodedClip, decode_clip
from iared_video.datasets.masks import load_image_mask, load_masks
from iared_video.datasets.transforms import (
    apply_video_transform,
    frames_to_video,
    image_transform,
    video_test_transform,
)
from iared_video.datasets.video_sampling import view_indices

__all__ = ["ViewSpec", "view_spec", "clip_index_fn", "decode_view", "video_view_transform", "image_view_transform",
           "load_video_view", "load_image_view", "load_video_view_with_masks", "load_image_view_with_mask"]

CENTRE_CROP = 1  # spatial index of the centre crop (see ``transforms.crop_offsets``)


@dataclass(frozen=True)
class ViewSpec:
    """How a file becomes one test-time model input (every field a plain value, no cfg)."""

    is_video: bool
    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    num_frames: int = 8
    sampling_rate: int = 8
    target_fps: float = 30.0
    backend: str = "decord"
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    fallback: bool = True
    threads: int = 1
    sampling: str = "clip"


def view_spec(cfg: Any) -> ViewSpec:
    """The test preprocessing of ``cfg`` (``DATA.*`` at ``TEST_CROP_SIZE``; video or image by ``is_video``)."""
    from iared_video.config import is_video

    d = cfg.DATA
    return ViewSpec(is_video(cfg), d.TEST_CROP_SIZE, tuple(d.MEAN), tuple(d.STD), d.NUM_FRAMES, d.SAMPLING_RATE,
                    d.TARGET_FPS, d.DECODING_BACKEND, d.IMAGE_CROP_PCT, d.IMAGE_INTERPOLATION, d.DECODING_FALLBACK,
                    d.DECODING_THREADS, d.TEMPORAL_SAMPLING)


def clip_index_fn(spec: ViewSpec, clip_idx: int = 0, num_clips: int = 1) -> functools.partial:
    """``(video_frames, fps) -> indices`` of temporal view ``clip_idx`` of ``num_clips`` (0 of 1: the centre clip;
    -1: a random training clip)."""
    return functools.partial(view_indices, spec.sampling, num_frames=spec.num_frames,
                             sampling_rate=spec.sampling_rate, target_fps=spec.target_fps, clip_idx=clip_idx,
                             num_clips=num_clips)


def decode_view(path: str, spec: ViewSpec, clip_idx: int = 0, num_clips: int = 1) -> DecodedClip:
    """Decode the frames of temporal view ``clip_idx`` (``spec.backend`` first, the other one on failure)."""
    return decode_clip(path, clip_index_fn(spec, clip_idx, num_clips), spec.backend, spec.fallback, spec.threads)


def video_view_transform(spec: ViewSpec, spatial_idx: int = CENTRE_CROP) -> Any:
    """Short side to the crop size, crop ``spatial_idx`` (0/1/2 along the long side), normalise."""
    return video_test_transform(spec.crop_size, spatial_idx, spec.mean, spec.std)


def image_view_transform(spec: ViewSpec) -> Any:
    """timm's eval transform: short side to ``crop_size / crop_pct``, centre crop, normalise."""
    return image_transform(False, spec.crop_size, spec.mean, spec.std, crop_pct=spec.crop_pct,
                           interpolation=spec.interpolation)


def load_video_view(path: str, spec: ViewSpec) -> tuple[Tensor, list[int]]:
    """The centre clip, centre crop ``(C, T, H, W)`` and the indices of its frames in the video."""
    clip = decode_view(path, spec)
    return apply_video_transform(clip.frames, video_view_transform(spec)), [int(i) for i in clip.indices]


def load_image_view(path: str, spec: ViewSpec) -> Tensor:
    """The eval-transformed image ``(C, H, W)``."""
    from iared_video.datasets.imagenet import load_rgb_image

    return image_view_transform(spec)(load_rgb_image(path))


def load_video_view_with_masks(path: str, mask_path: str, spec: ViewSpec) -> tuple[Tensor, Tensor]:
    """The centre view ``(C, T, H, W)`` and its frames' masks ``(T, H, W)`` bool, transformed jointly."""
    clip = decode_view(path, spec)
    masks = torch.from_numpy(load_masks(mask_path)[clip.indices])
    video, mask = video_view_transform(spec)(frames_to_video(clip.frames), tv_tensors.Mask(masks))
    return video.as_subclass(Tensor).permute(1, 0, 2, 3), mask.as_subclass(Tensor).bool()


def load_image_view_with_mask(path: str, mask_path: str, spec: ViewSpec) -> tuple[Tensor, Tensor]:
    """The eval view ``(C, H, W)`` and its mask ``(1, H, W)`` bool: same resize (nearest) and centre crop."""
    mask = torch.from_numpy(load_image_mask(mask_path))[None].to(torch.uint8)
    scale = int(spec.crop_size / spec.crop_pct)
    mask = TF.center_crop(TF.resize(mask, [scale], InterpolationMode.NEAREST), [spec.crop_size])
    return load_image_view(path, spec), mask.bool()
