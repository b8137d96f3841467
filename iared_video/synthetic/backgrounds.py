"""Static cluttered backgrounds and sliding stripe bands (the redundant patches of every scene)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from iared_video.synthetic.knobs import VideoKnobs
from iared_video.synthetic.shapes import Region
from iared_video.synthetic.streams import random_color, uniform

__all__ = ["make_background", "Band", "sample_bands"]


def _smooth_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency random colour field (h, w, 3) float32."""
    cells = rng.integers(0, 256, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    img = Image.fromarray(cells.astype(np.uint8)).resize((w, h), Image.BILINEAR)  # type: ignore[attr-defined]  # pillow>=9 still has it; stubs list Resampling only
    return np.asarray(img, dtype=np.float32)


def _random_box(rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> Region:
    """A random axis-aligned box whose sides are fractions lo..hi of the image."""
    bh, bw = max(int(h * uniform(rng, (lo, hi))), 2), max(int(w * uniform(rng, (lo, hi))), 2)
    y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    return slice(y0, y0 + bh), slice(x0, x0 + bw)


def _stripe_phase(rng: np.random.Generator, region: Region) -> np.ndarray:
    """Phase map 2*pi*(k . x) of oriented stripes over ``region``."""
    period, angle = uniform(rng, (6.0, 20.0)), rng.uniform(0, math.pi)
    ys = np.arange(region[0].stop - region[0].start, dtype=np.float32)[:, None]
    xs = np.arange(region[1].stop - region[1].start, dtype=np.float32)[None, :]
    k = np.float32(2 * math.pi / period)
    return k * (np.float32(math.cos(angle)) * xs + np.float32(math.sin(angle)) * ys)


def _mix(c1: np.ndarray, c2: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Sinusoidal blend of two colours driven by a phase map, (h, w, 3)."""
    s = (0.5 + 0.5 * np.sin(phase))[..., None]
    return c1 * s + c2 * (1 - s)


def _paint_element(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Paints one clutter element (rectangle, blob or stripe patch) in place."""
    h, w = canvas.shape[:2]
    kind, color = int(rng.integers(3)), random_color(rng, (0.1, 0.7), (0.2, 0.9))
    region = _random_box(rng, h, w, 0.08, 0.4)
    alpha = uniform(rng, (0.4, 0.9))
    patch = canvas[region]
    if kind == 0:
        patch[:] = (1 - alpha) * patch + alpha * color
    elif kind == 1:
        ph, pw = patch.shape[:2]
        yy = np.linspace(-1, 1, ph, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, pw, dtype=np.float32)[None, :]
        a = (alpha * np.exp(-3 * (xx * xx + yy * yy)))[..., None]
        patch[:] = (1 - a) * patch + a * color
    else:
        other = random_color(rng, (0.1, 0.7), (0.2, 0.9))
        patch[:] = (1 - alpha) * patch + alpha * _mix(color, other, _stripe_phase(rng, region))


def make_background(rng: np.random.Generator, h: int, w: int, clutter: float) -> np.ndarray:
    """Static cluttered background (h, w, 3) uint8; clutter 0 is uniform."""
    base = random_color(rng, (0.05, 0.5), (0.25, 0.8))
    canvas: np.ndarray = np.empty((h, w, 3), dtype=np.float32)
    canvas[:] = base
    field_ = _smooth_field(rng, h, w)
    amount = min(clutter, 1.0) * 0.5
    canvas = (1 - amount) * canvas + amount * field_
    for _ in range(int(round(clutter * rng.integers(6, 14)))):
        _paint_element(rng, canvas)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Band:
    """A background patch of stripes that slide over time."""

    region: Region
    phase: np.ndarray
    colors: tuple[np.ndarray, np.ndarray]
    cycles: float

    def paint(self, frame: np.ndarray, u: float) -> None:
        """Paints the band at normalized time ``u`` into ``frame`` in place."""
        phase = self.phase + np.float32(2 * math.pi * self.cycles * u)
        frame[self.region] = np.clip(_mix(*self.colors, phase) + 0.5, 0, 255).astype(np.uint8)


def sample_bands(rng: np.random.Generator, h: int, w: int, knobs: VideoKnobs) -> list[Band]:
    """Moving stripe bands (none when clutter or background_motion is 0)."""
    count = int(round(min(knobs.clutter, 2.0))) if knobs.background_motion > 0 else 0
    bands = []
    for _ in range(count):
        region = _random_box(rng, h, w, 0.2, 0.4)
        colors = (random_color(rng, (0.1, 0.6), (0.3, 0.9)),
                  random_color(rng, (0.1, 0.6), (0.3, 0.9)))
        cycles = knobs.background_motion * uniform(rng, (0.5, 1.5)) * (1 if rng.uniform() < 0.5 else -1)
        bands.append(Band(region, _stripe_phase(rng, region), colors, cycles))
    return bands
