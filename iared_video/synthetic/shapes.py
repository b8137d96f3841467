"""Shape masks in rotated local coordinates: the actor, the distractors and the image objects."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["SHAPES", "Region", "local_coords"]


def _triangle(lx: np.ndarray, ly: np.ndarray, r: float) -> np.ndarray:
    """Equilateral triangle, circumradius r, one vertex on +x."""
    inside = np.ones(np.broadcast(lx, ly).shape, dtype=bool)
    for k in range(3):
        a = math.pi + 2 * math.pi * k / 3
        inside &= lx * math.cos(a) + ly * math.sin(a) <= r / 2
    return inside


def _cross(lx: np.ndarray, ly: np.ndarray, r: float) -> np.ndarray:
    """Plus sign with arm length r and arm half-width 0.36 r."""
    ax, ay, w = np.abs(lx), np.abs(ly), 0.36 * r
    return ((ax <= r) & (ay <= w)) | ((ay <= r) & (ax <= w))


def _star(lx: np.ndarray, ly: np.ndarray, r: float) -> np.ndarray:
    """Five-pointed rounded star with outer radius r."""
    rho, phi = np.hypot(lx, ly), np.arctan2(ly, lx)
    return rho <= r * (0.62 + 0.38 * np.cos(5 * phi))


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "disc": lambda lx, ly, r: lx * lx + ly * ly <= r * r,
    "square": lambda lx, ly, r: np.maximum(np.abs(lx), np.abs(ly)) <= 0.8 * r,
    "triangle": _triangle,
    "cross": _cross,
    "star": _star,
    "ring": lambda lx, ly, r: (np.hypot(lx, ly) <= r) & (np.hypot(lx, ly) >= 0.55 * r),
    "ellipse": lambda lx, ly, r: lx * lx + (1.8 * ly) ** 2 <= r * r,
}

Region = tuple[slice, slice]


def local_coords(cx: float, cy: float, extent: float, theta: float, h: int,
                  w: int) -> tuple[Region, np.ndarray, np.ndarray] | None:
    """Pixel coordinates of a clipped box around (cx, cy) in a rotated frame.

    Returns:
        ``(region, lx, ly)`` with ``region`` the (rows, cols) slices of the box
        and ``lx, ly`` the coordinates rotated by ``-theta`` (so a shape drawn
        in local coordinates appears rotated by ``theta``, clockwise on
        screen since y points down), or None when the box is off-image.
    """
    x0, x1 = max(int(math.floor(cx - extent)), 0), min(int(math.ceil(cx + extent)) + 1, w)
    y0, y1 = max(int(math.floor(cy - extent)), 0), min(int(math.ceil(cy + extent)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    return (slice(y0, y1), slice(x0, x1)), c * dx + s * dy, c * dy - s * dx
