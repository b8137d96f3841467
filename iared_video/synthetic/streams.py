"""Random streams of the generators and the small random draws every part shares.

Each video, image, label draw and split draw has its own seed-sequence stream, so item ``i`` of a set
depends only on ``(seed, i)`` and can be rendered alone, in any order or process.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np

from iared_video.synthetic.knobs import GENERATOR_VERSION, VideoKnobs
from iared_video.synthetic.writers import decord_readable_width

__all__ = ["video_rng", "image_rng", "uniform", "random_color", "contrast_color", "sample_size",
           "sample_video_spec", "sample_noise", "add_noise", "VIDEO_STREAM", "LABEL_STREAM", "SPLIT_STREAM",
           "IMAGE_STREAM"]


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


def sample_video_spec(rng: np.random.Generator, knobs: VideoKnobs | None = None,
                      version: str = GENERATOR_VERSION) -> tuple[int, int, int, int]:
    """Draws a video's (height, width, num_frames, fps).

    These are the first draws of every video (every generator version), so
    ``sample_video_spec(video_rng(seed, i), knobs, version)`` predicts the geometry of
    video ``i`` of a generated set without rendering it. From 1.2.1 on, a width decord cannot read is
    drawn 2 pixels wider, without an extra draw (1.2.0 keeps it, so its sets regenerate exactly).
    """
    knobs = knobs or VideoKnobs()
    h, w = sample_size(rng, knobs)
    if version != "1.2.0":
        w = decord_readable_width(w)  # no extra draw: only videos of an unreadable width change
    t = int(rng.integers(knobs.min_frames, knobs.max_frames + 1))
    rate = int(knobs.fps_choices[int(rng.integers(len(knobs.fps_choices)))])
    return h, w, t, rate


def sample_noise(rng: np.random.Generator, h: int, w: int, t: int,
                  sigma: float) -> tuple[np.ndarray | None, np.ndarray]:
    """A padded noise pool and per-frame crop offsets (cheap temporal noise)."""
    offsets = rng.integers(0, 9, size=(t, 2))
    if sigma <= 0:
        return None, offsets
    pool = rng.standard_normal((h + 8, w + 8, 3), dtype=np.float32) * np.float32(sigma)
    return np.round(pool).astype(np.int16), offsets


def add_noise(frame: np.ndarray, pool: np.ndarray | None, offset: np.ndarray) -> np.ndarray:
    """Adds a crop of the noise pool to a uint8 frame."""
    if pool is None:
        return frame
    h, w = frame.shape[:2]
    crop = pool[offset[0]:offset[0] + h, offset[1]:offset[1] + w]
    return np.clip(frame.astype(np.int16) + crop, 0, 255).astype(np.uint8)
