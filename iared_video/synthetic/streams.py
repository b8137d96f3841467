"""Random streams of the generators and the small random draws every part shares.

Each video, image, label draw and split draw has its own seed-sequence stream, so item ``i`` of a set
depends only on ``(seed, i)`` and can be rendered alone, in any order or process.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["video_rng", "image_rng", "uniform", "random_color", "contrast_color", "sample_size",
           "VIDEO_STREAM", "LABEL_STREAM", "SPLIT_STREAM", "IMAGE_STREAM"]


# Seed-sequence domain tags: rng streams that never collide for one seed.
VIDEO_STREAM, LABEL_STREAM, SPLIT_STREAM, IMAGE_STREAM = 0, 1, 2, 3


def video_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that renders video ``index`` of a set made with ``seed``."""
    return np.random.default_rng([seed, VIDEO_STREAM, index])


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that renders image ``index`` of a set made with ``seed``."""
    return np.random.default_rng([seed, IMAGE_STREAM, index])


def uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    """One uniform draw in ``[bounds[0], bounds[1]]``."""
    return float(rng.uniform(bounds[0], bounds[1]))


def random_color(rng: np.random.Generator, sat: Sequence[float],
                  val: Sequence[float]) -> np.ndarray:
    """A random RGB colour (float32, 0-255) with saturation/value in ranges."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), uniform(rng, sat), uniform(rng, val))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def contrast_color(color: np.ndarray) -> np.ndarray:
    """Black or white, whichever contrasts more in luminance with ``color``."""
    luma = float(color @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.full(3, 20.0 if luma > 128 else 235.0, dtype=np.float32)


def sample_size(rng: np.random.Generator, knobs: Any) -> tuple[int, int]:
    """Draws an even (height, width): landscape, portrait or square."""
    short = int(rng.integers(knobs.min_short_side // 2, knobs.max_short_side // 2 + 1)) * 2
    ratio = float(knobs.aspect_ratios[int(rng.integers(len(knobs.aspect_ratios)))])
    long_side = int(round(short * ratio / 2)) * 2
    portrait = bool(rng.uniform() < knobs.portrait_prob)
    return (long_side, short) if portrait else (short, long_side)
