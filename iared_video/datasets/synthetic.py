"""Embedded synthetic data sets: motion-only action videos and textured-object images.

The video set is the default data of the project (no downloads). Its classes
differ *only* in how a small actor moves over time, so a single frame cannot
tell them apart: every random draw (size, length, background, distractors,
actor appearance and start pose, motion amplitudes, noise) is made before the
label is looked at, and every trajectory starts with zero displacement and
zero rotation. Videos are written as H.264 MP4 in the Kinetics CSV layout with
per-frame ground-truth actor masks; the image variant uses the ImageNet folder
layout with per-image object masks. See ``datasets/SYNTHETIC.md``.

Public API: :data:`VIDEO_CLASSES`, :data:`IMAGE_CLASSES`,
:func:`generate_video_dataset`, :func:`generate_image_dataset`,
:func:`render_video`, :func:`render_image`, :func:`write_mp4`,
:func:`load_masks`, :func:`load_image_mask`, :func:`video_rng`,
:func:`image_rng`, :func:`sample_video_spec`, :class:`VideoKnobs`,
:class:`ImageKnobs`.
"""

from __future__ import annotations

import colorsys
import io
import json
import logging
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from iared_video.synthetic.parallel import run_jobs

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1.0"
#: The ``generator`` field of every ``meta.json`` written here (how tools recognise a generated set).
GENERATOR_NAME = "iared_video.datasets.synthetic"

#: Video class names in id order; ``num_classes=K`` uses the first K.
VIDEO_CLASSES: list[str] = [
    "move_right",
    "move_left",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "circle_cw",
    "go_and_return",
    "circle_ccw",
    "stay_still",
]

_IMAGE_SHAPES = ("disc", "square", "triangle", "cross", "star", "ring")
_IMAGE_PATTERNS = ("solid", "striped", "dotted", "checkered", "gridded")
#: Image class names (shape x fill pattern) in id order, shape-major: the first five are the disc in each pattern.
IMAGE_CLASSES: list[str] = [f"{s}_{p}" for s in _IMAGE_SHAPES for p in _IMAGE_PATTERNS]

ACTOR_SHAPES = ("disc", "square", "triangle", "cross")
DEFAULT_NUM_VIDEOS = 3000
DEFAULT_NUM_IMAGES = 600
DEFAULT_IMAGE_CLASSES = 5
SPLITS = ("train", "val", "test")

# Seed-sequence domain tags: rng streams that never collide for one seed.
_VIDEO_STREAM, _LABEL_STREAM, _SPLIT_STREAM, _IMAGE_STREAM = 0, 1, 2, 3


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoKnobs:
    """Every knob of the video generator (fractions are of the short side).

    Attributes:
        min_frames: Fewest frames per video.
        max_frames: Most frames per video (inclusive).
        fps_choices: Frame rates drawn uniformly per video.
        min_short_side: Smallest short side in pixels (rounded to even).
        max_short_side: Largest short side in pixels (inclusive).
        aspect_ratios: Long/short ratios drawn uniformly per video.
        portrait_prob: Probability that a non-square video is portrait.
        actor_size: (min, max) actor diameter.
        motion_amplitude: (min, max) actor displacement over the video.
        rotation_degrees: (min, max) total rotation of the rotate classes.
        clutter: Amount of static background texture (0 = uniform colour).
        num_distractors: (min, max) drifting distractor shapes.
        distractor_size: (min, max) distractor diameter.
        distractor_motion: Largest distractor drift over the video.
        distractor_shapes: Distractors use the actor shapes (harder) instead
            of ellipses.
        background_motion: Stripe periods a moving background band slides
            over the video (0 = static background).
        noise: Std of additive per-frame pixel noise (0-255 scale).
        crf: x264 constant rate factor (lower = higher quality).
    """

    min_frames: int = 32
    max_frames: int = 48
    fps_choices: tuple[int, ...] = (15, 24, 25, 30)
    min_short_side: int = 64
    max_short_side: int = 96
    aspect_ratios: tuple[float, ...] = (1.0, 4 / 3, 16 / 9)
    portrait_prob: float = 0.4
    actor_size: tuple[float, float] = (0.2, 0.28)
    motion_amplitude: tuple[float, float] = (0.45, 0.6)
    rotation_degrees: tuple[float, float] = (150.0, 270.0)
    clutter: float = 0.3
    num_distractors: tuple[int, int] = (0, 2)
    distractor_size: tuple[float, float] = (0.08, 0.2)
    distractor_motion: float = 0.05
    distractor_shapes: bool = False
    background_motion: float = 0.0
    noise: float = 0.0
    crf: int = 23


@dataclass(frozen=True)
class ImageKnobs:
    """Every knob of the image generator (fractions are of the short side).

    Attributes:
        min_short_side: Smallest short side in pixels (rounded to even).
        max_short_side: Largest short side in pixels (inclusive).
        aspect_ratios: Long/short ratios drawn uniformly per image.
        portrait_prob: Probability that a non-square image is portrait.
        object_size: (min, max) object diameter.
        clutter: Amount of background texture (0 = uniform colour).
        num_distractors: (min, max) soft distractor ellipses.
        distractor_size: (min, max) distractor diameter.
        noise: Std of additive pixel noise (0-255 scale); 0 by default
            because noise triples PNG size and encoding time.
    """

    min_short_side: int = 128
    max_short_side: int = 256
    aspect_ratios: tuple[float, ...] = (1.0, 4 / 3, 16 / 9)
    portrait_prob: float = 0.4
    object_size: tuple[float, float] = (0.25, 0.5)
    clutter: float = 1.0
    num_distractors: tuple[int, int] = (2, 5)
    distractor_size: tuple[float, float] = (0.1, 0.3)
    noise: float = 0.0


VIDEO_DIFFICULTY: dict[str, dict[str, Any]] = {
    "easy": dict(clutter=0.1, num_distractors=(0, 1), distractor_motion=0.0),
    "medium": {},
    "hard": dict(min_short_side=112, max_short_side=224, max_frames=64, actor_size=(0.05, 0.09),
                 motion_amplitude=(0.3, 0.45), clutter=1.6, num_distractors=(4, 8), distractor_motion=0.3,
                 distractor_shapes=True, background_motion=1.0, noise=5.0),
}
IMAGE_DIFFICULTY: dict[str, dict[str, Any]] = {
    "easy": dict(object_size=(0.4, 0.6), clutter=0.3, num_distractors=(0, 2), noise=0.0),
    "medium": {},
    "hard": dict(object_size=(0.15, 0.3), clutter=1.6, num_distractors=(4, 8), noise=4.0),
}


def make_knobs(cls: type, difficulty: str = "medium", **overrides: Any) -> Any:
    """Builds a knob dataclass from a difficulty preset plus overrides.

    Args:
        cls: :class:`VideoKnobs` or :class:`ImageKnobs`.
        difficulty: ``easy``, ``medium`` or ``hard``.
        **overrides: Knob values that replace the preset's.

    Returns:
        The validated knob instance.
    """
    presets = VIDEO_DIFFICULTY if cls is VideoKnobs else IMAGE_DIFFICULTY
    if difficulty not in presets:
        raise ValueError(f"difficulty must be one of {sorted(presets)}, got {difficulty!r}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} knob(s) {unknown}; valid: {sorted(names)}")
    values = {**presets[difficulty], **overrides}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    knobs = replace(cls(), **values)
    _validate_knobs(knobs)
    return knobs


def _validate_knobs(knobs: Any) -> None:
    """Raises ValueError for impossible knob combinations."""
    pairs = [(k, getattr(knobs, k)) for k in ("actor_size", "object_size", "motion_amplitude",
                                              "rotation_degrees", "num_distractors",
                                              "distractor_size") if hasattr(knobs, k)]
    pairs += [("short_side", (knobs.min_short_side, knobs.max_short_side))]
    if hasattr(knobs, "min_frames"):
        pairs.append(("frames", (knobs.min_frames, knobs.max_frames)))
        if knobs.min_frames < 2 or not knobs.fps_choices:
            raise ValueError("need min_frames >= 2 and at least one fps choice")
    for name, (lo, hi) in pairs:
        if lo > hi or lo < 0:
            raise ValueError(f"{name}: need 0 <= min <= max, got ({lo}, {hi})")
    if knobs.min_short_side < 32 or not knobs.aspect_ratios or min(knobs.aspect_ratios) < 1:
        raise ValueError("need min_short_side >= 32 and aspect ratios >= 1 (long/short)")
    if knobs.clutter < 0 or knobs.noise < 0 or not 0 <= knobs.portrait_prob <= 1:
        raise ValueError("clutter and noise must be >= 0, portrait_prob in [0, 1]")


# --------------------------------------------------------------------------
# Random streams and small random helpers
# --------------------------------------------------------------------------


def video_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that renders video ``index`` of a set made with ``seed``."""
    return np.random.default_rng([seed, _VIDEO_STREAM, index])


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that renders image ``index`` of a set made with ``seed``."""
    return np.random.default_rng([seed, _IMAGE_STREAM, index])


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    """One uniform draw in ``[bounds[0], bounds[1]]``."""
    return float(rng.uniform(bounds[0], bounds[1]))


def _random_color(rng: np.random.Generator, sat: Sequence[float],
                  val: Sequence[float]) -> np.ndarray:
    """A random RGB colour (float32, 0-255) with saturation/value in ranges."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), _uniform(rng, sat), _uniform(rng, val))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def _contrast_color(color: np.ndarray) -> np.ndarray:
    """Black or white, whichever contrasts more in luminance with ``color``."""
    luma = float(color @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.full(3, 20.0 if luma > 128 else 235.0, dtype=np.float32)


def _sample_size(rng: np.random.Generator, knobs: Any) -> tuple[int, int]:
    """Draws an even (height, width): landscape, portrait or square."""
    short = int(rng.integers(knobs.min_short_side // 2, knobs.max_short_side // 2 + 1)) * 2
    ratio = float(knobs.aspect_ratios[int(rng.integers(len(knobs.aspect_ratios)))])
    long_side = int(round(short * ratio / 2)) * 2
    portrait = bool(rng.uniform() < knobs.portrait_prob)
    return (long_side, short) if portrait else (short, long_side)


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------


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


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "disc": lambda lx, ly, r: lx * lx + ly * ly <= r * r,
    "square": lambda lx, ly, r: np.maximum(np.abs(lx), np.abs(ly)) <= 0.8 * r,
    "triangle": _triangle,
    "cross": _cross,
    "star": _star,
    "ring": lambda lx, ly, r: (np.hypot(lx, ly) <= r) & (np.hypot(lx, ly) >= 0.55 * r),
    "ellipse": lambda lx, ly, r: lx * lx + (1.8 * ly) ** 2 <= r * r,
}

Region = tuple[slice, slice]


def _local_coords(cx: float, cy: float, extent: float, theta: float, h: int,
                  w: int) -> Optional[tuple[Region, np.ndarray, np.ndarray]]:
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


# --------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency random colour field (h, w, 3) float32."""
    cells = rng.integers(0, 256, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    img = Image.fromarray(cells.astype(np.uint8)).resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _random_box(rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> Region:
    """A random axis-aligned box whose sides are fractions lo..hi of the image."""
    bh, bw = max(int(h * _uniform(rng, (lo, hi))), 2), max(int(w * _uniform(rng, (lo, hi))), 2)
    y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    return slice(y0, y0 + bh), slice(x0, x0 + bw)


def _stripe_phase(rng: np.random.Generator, region: Region) -> np.ndarray:
    """Phase map 2*pi*(k . x) of oriented stripes over ``region``."""
    period, angle = _uniform(rng, (6.0, 20.0)), rng.uniform(0, math.pi)
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
    kind, color = int(rng.integers(3)), _random_color(rng, (0.1, 0.7), (0.2, 0.9))
    region = _random_box(rng, h, w, 0.08, 0.4)
    alpha = _uniform(rng, (0.4, 0.9))
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
        other = _random_color(rng, (0.1, 0.7), (0.2, 0.9))
        patch[:] = (1 - alpha) * patch + alpha * _mix(color, other, _stripe_phase(rng, region))


def _make_background(rng: np.random.Generator, h: int, w: int, clutter: float) -> np.ndarray:
    """Static cluttered background (h, w, 3) uint8; clutter 0 is uniform."""
    base = _random_color(rng, (0.05, 0.5), (0.25, 0.8))
    canvas = np.empty((h, w, 3), dtype=np.float32)
    canvas[:] = base
    field_ = _smooth_field(rng, h, w)
    amount = min(clutter, 1.0) * 0.5
    canvas = (1 - amount) * canvas + amount * field_
    for _ in range(int(round(clutter * rng.integers(6, 14)))):
        _paint_element(rng, canvas)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


@dataclass
class _Band:
    """A background patch of stripes that slide over time."""

    region: Region
    phase: np.ndarray
    colors: tuple[np.ndarray, np.ndarray]
    cycles: float

    def paint(self, frame: np.ndarray, u: float) -> None:
        """Paints the band at normalized time ``u`` into ``frame`` in place."""
        phase = self.phase + np.float32(2 * math.pi * self.cycles * u)
        frame[self.region] = np.clip(_mix(*self.colors, phase) + 0.5, 0, 255).astype(np.uint8)


def _sample_bands(rng: np.random.Generator, h: int, w: int, knobs: VideoKnobs) -> list[_Band]:
    """Moving stripe bands (none when clutter or background_motion is 0)."""
    count = int(round(min(knobs.clutter, 2.0))) if knobs.background_motion > 0 else 0
    bands = []
    for _ in range(count):
        region = _random_box(rng, h, w, 0.2, 0.4)
        colors = (_random_color(rng, (0.1, 0.6), (0.3, 0.9)),
                  _random_color(rng, (0.1, 0.6), (0.3, 0.9)))
        cycles = knobs.background_motion * _uniform(rng, (0.5, 1.5)) * (1 if rng.uniform() < 0.5 else -1)
        bands.append(_Band(region, _stripe_phase(rng, region), colors, cycles))
    return bands


# --------------------------------------------------------------------------
# Sprites: distractors and the actor
# --------------------------------------------------------------------------


@dataclass
class _Sprite:
    """A distractor: a solid, semi-transparent shape drifting linearly."""

    shape: str
    radius: float
    color: np.ndarray
    alpha: float
    start: tuple[float, float]
    drift: tuple[float, float]
    theta: float

    def paint(self, frame: np.ndarray, u: float) -> None:
        """Paints the sprite at normalized time ``u`` into ``frame`` in place."""
        cx, cy = self.start[0] + self.drift[0] * u, self.start[1] + self.drift[1] * u
        loc = _local_coords(cx, cy, self.radius + 1, self.theta, *frame.shape[:2])
        if loc is None:
            return
        region, lx, ly = loc
        inside = _SHAPES[self.shape](lx, ly, self.radius)
        patch = frame[region]
        patch[inside] = ((1 - self.alpha) * patch[inside] + self.alpha * self.color + 0.5).astype(np.uint8)


def _sample_sprites(rng: np.random.Generator, h: int, w: int, knobs: VideoKnobs) -> list[_Sprite]:
    """Distractors drifting in random, label-independent directions."""
    short, sprites = min(h, w), []
    for _ in range(int(rng.integers(knobs.num_distractors[0], knobs.num_distractors[1] + 1))):
        shape = str(rng.choice(ACTOR_SHAPES)) if knobs.distractor_shapes else "ellipse"
        radius = _uniform(rng, knobs.distractor_size) * short / 2
        color = _random_color(rng, (0.2, 0.9), (0.3, 1.0))
        start = (rng.uniform(0, w), rng.uniform(0, h))
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0, knobs.distractor_motion) * short
        drift = (dist * math.cos(angle), dist * math.sin(angle))
        sprites.append(_Sprite(shape, radius, color, _uniform(rng, (0.6, 1.0)), start, drift,
                               rng.uniform(0, 2 * math.pi)))
    return sprites


@dataclass
class _Actor:
    """The class-carrying actor: shape, colour, outline/marker, start pose."""

    shape: str
    radius: float
    color: np.ndarray
    start: tuple[float, float]
    theta: float

    def paint(self, frame: np.ndarray, mask: np.ndarray, dx: float, dy: float,
              dtheta: float) -> None:
        """Paints the actor displaced by (dx, dy, dtheta) and fills its mask.

        The body has a 1-pixel outline and an off-centre marker dot in a
        contrasting grey so that rotation is visible for every shape.
        """
        r = self.radius
        loc = _local_coords(self.start[0] + dx, self.start[1] + dy, r + 1, self.theta + dtheta,
                            *frame.shape[:2])
        if loc is None:
            return
        region, lx, ly = loc
        body = _SHAPES[self.shape](lx, ly, r)
        inner = _SHAPES[self.shape](lx, ly, r - 1.0)
        marker = (lx - 0.45 * r) ** 2 + ly * ly <= max(1.0, 0.2 * r) ** 2
        contrast, patch = _contrast_color(self.color).astype(np.uint8), frame[region]
        patch[body] = contrast
        patch[inner] = self.color.astype(np.uint8)
        patch[inner & marker] = contrast
        mask[region] |= body


@dataclass
class _Motion:
    """Label-independent motion parameters; the label only picks a trajectory."""

    amplitude: float
    rotation: float
    direction: float
    phase: float


def _circle(m: _Motion, u: float, sign: float) -> tuple[float, float, float]:
    """Offset on a full circle through the start point (sign>0: clockwise)."""
    rc, a = m.amplitude / 2, m.phase + sign * 2 * math.pi * u
    return rc * (math.cos(a) - math.cos(m.phase)), rc * (math.sin(a) - math.sin(m.phase)), 0.0


def _go_and_return(m: _Motion, u: float) -> tuple[float, float, float]:
    """Out along a random direction and back to the start."""
    d = m.amplitude * math.sin(math.pi * u)
    return d * math.cos(m.direction), d * math.sin(m.direction), 0.0


_TRAJECTORIES: dict[str, Callable[[_Motion, float], tuple[float, float, float]]] = {
    "move_right": lambda m, u: (m.amplitude * u, 0.0, 0.0),
    "move_left": lambda m, u: (-m.amplitude * u, 0.0, 0.0),
    "move_up": lambda m, u: (0.0, -m.amplitude * u, 0.0),
    "move_down": lambda m, u: (0.0, m.amplitude * u, 0.0),
    "rotate_cw": lambda m, u: (0.0, 0.0, m.rotation * u),
    "rotate_ccw": lambda m, u: (0.0, 0.0, -m.rotation * u),
    "circle_cw": lambda m, u: _circle(m, u, 1.0),
    "go_and_return": _go_and_return,
    "circle_ccw": lambda m, u: _circle(m, u, -1.0),
    "stay_still": lambda m, u: (0.0, 0.0, 0.0),
}
assert list(_TRAJECTORIES) == VIDEO_CLASSES


def _sample_actor(rng: np.random.Generator, h: int, w: int,
                  knobs: VideoKnobs) -> tuple[_Actor, _Motion]:
    """Actor appearance, start pose and motion sizes; never looks at the label.

    The start point is uniform over the area from which *every* trajectory
    (largest displacement ``amplitude`` in any direction) stays in frame.
    """
    short = min(h, w)
    radius = max(_uniform(rng, knobs.actor_size) * short / 2, 2.5)
    color = _random_color(rng, (0.6, 1.0), (0.6, 1.0))
    shape = str(rng.choice(ACTOR_SHAPES))
    margin = radius + 2
    amplitude = min(_uniform(rng, knobs.motion_amplitude) * short, short / 2 - margin - 1)
    amplitude = max(amplitude, 0.0)
    start = (rng.uniform(margin + amplitude, w - margin - amplitude),
             rng.uniform(margin + amplitude, h - margin - amplitude))
    motion = _Motion(amplitude, math.radians(_uniform(rng, knobs.rotation_degrees)),
                     rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))
    return _Actor(shape, radius, color, start, rng.uniform(0, 2 * math.pi)), motion


# --------------------------------------------------------------------------
# Scenes and rendering
# --------------------------------------------------------------------------


@dataclass
class _Scene:
    """Everything random about one video, drawn before the label is used."""

    fps: int
    num_frames: int
    background: np.ndarray
    bands: list[_Band]
    sprites: list[_Sprite]
    actor: _Actor
    motion: _Motion
    noise: Optional[np.ndarray] = None
    noise_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))


def _sample_noise(rng: np.random.Generator, h: int, w: int, t: int,
                  sigma: float) -> tuple[Optional[np.ndarray], np.ndarray]:
    """A padded noise pool and per-frame crop offsets (cheap temporal noise)."""
    offsets = rng.integers(0, 9, size=(t, 2))
    if sigma <= 0:
        return None, offsets
    pool = rng.standard_normal((h + 8, w + 8, 3), dtype=np.float32) * np.float32(sigma)
    return np.round(pool).astype(np.int16), offsets


def _add_noise(frame: np.ndarray, pool: Optional[np.ndarray], offset: np.ndarray) -> np.ndarray:
    """Adds a crop of the noise pool to a uint8 frame."""
    if pool is None:
        return frame
    h, w = frame.shape[:2]
    crop = pool[offset[0]:offset[0] + h, offset[1]:offset[1] + w]
    return np.clip(frame.astype(np.int16) + crop, 0, 255).astype(np.uint8)


def sample_video_spec(rng: np.random.Generator,
                      knobs: Optional[VideoKnobs] = None) -> tuple[int, int, int, int]:
    """Draws a video's (height, width, num_frames, fps).

    These are the first draws of every video, so
    ``sample_video_spec(video_rng(seed, i), knobs)`` predicts the geometry of
    video ``i`` of a generated set without rendering it.
    """
    knobs = knobs or VideoKnobs()
    h, w = _sample_size(rng, knobs)
    t = int(rng.integers(knobs.min_frames, knobs.max_frames + 1))
    rate = int(knobs.fps_choices[int(rng.integers(len(knobs.fps_choices)))])
    return h, w, t, rate


def _sample_scene(rng: np.random.Generator, knobs: VideoKnobs, height: Optional[int],
                  width: Optional[int], num_frames: Optional[int], fps: Optional[int]) -> _Scene:
    """Draws one video's scene; given sizes/length/fps override the draws."""
    h, w, t, rate = sample_video_spec(rng, knobs)
    h, w, t, rate = height or h, width or w, num_frames or t, fps or rate
    if h % 2 or w % 2 or t < 1:
        raise ValueError(f"need even height/width and >= 1 frame, got {h}x{w}, {t} frames")
    background = _make_background(rng, h, w, knobs.clutter)
    bands, sprites = _sample_bands(rng, h, w, knobs), _sample_sprites(rng, h, w, knobs)
    actor, motion = _sample_actor(rng, h, w, knobs)
    noise, offsets = _sample_noise(rng, h, w, t, knobs.noise)
    return _Scene(rate, t, background, bands, sprites, actor, motion, noise, offsets)


def _render_scene(scene: _Scene, class_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Renders frames (T, H, W, 3) uint8 and actor masks (T, H, W) bool."""
    t, (h, w) = scene.num_frames, scene.background.shape[:2]
    frames = np.empty((t, h, w, 3), dtype=np.uint8)
    masks = np.zeros((t, h, w), dtype=bool)
    trajectory = _TRAJECTORIES[class_name]
    for i in range(t):
        u = i / (t - 1) if t > 1 else 0.0
        frame = scene.background.copy()
        for band in scene.bands:
            band.paint(frame, u)
        for sprite in scene.sprites:
            sprite.paint(frame, u)
        scene.actor.paint(frame, masks[i], *trajectory(scene.motion, u))
        frames[i] = _add_noise(frame, scene.noise, scene.noise_offsets[i])
    return frames, masks


def render_video(rng: np.random.Generator, label: int, *, height: Optional[int] = None,
                 width: Optional[int] = None, num_frames: Optional[int] = None,
                 fps: Optional[int] = None, difficulty: str = "medium",
                 **knobs: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Renders one synthetic action video in memory.

    All randomness is drawn from ``rng`` before ``label`` is used, so two
    calls with the same rng state and different labels differ only in the
    actor's trajectory (their first frames are identical).

    Args:
        rng: Source of randomness (e.g. :func:`video_rng`).
        label: Class id, an index into :data:`VIDEO_CLASSES`.
        height: Frame height (even); drawn from the knobs if None.
        width: Frame width (even); drawn from the knobs if None.
        num_frames: Frame count; drawn from the knobs if None.
        fps: Frame rate; drawn from ``fps_choices`` if None.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        **knobs: :class:`VideoKnobs` overrides.

    Returns:
        ``(frames, masks, fps)``: uint8 (T, H, W, 3) RGB frames, bool
        (T, H, W) actor masks and the integer frame rate.
    """
    if not 0 <= label < len(VIDEO_CLASSES):
        raise ValueError(f"label must be in [0, {len(VIDEO_CLASSES)}), got {label}")
    scene = _sample_scene(rng, make_knobs(VideoKnobs, difficulty, **knobs), height, width,
                          num_frames, fps)
    frames, masks = _render_scene(scene, VIDEO_CLASSES[label])
    return frames, masks, scene.fps


# --------------------------------------------------------------------------
# Writers and readers
# --------------------------------------------------------------------------


def write_mp4(path: str, frames: np.ndarray, fps: int, crf: int = 23) -> None:
    """Writes RGB frames as an H.264 (libx264, yuv420p) MP4 with PyAV.

    B-frames are off and every frame gets pts = index at time base 1/fps, so
    decoders return exactly T frames. One encoder thread, fixed options and
    macroblock-tree rate control off make the output byte-identical across
    runs: with mb-tree on, this x264 build's output depended on heap contents
    (a few videos in 400 differed between runs).

    Args:
        path: Output ``.mp4`` path.
        frames: uint8 (T, H, W, 3) RGB frames with even H and W.
        fps: Integer frame rate.
        crf: x264 constant rate factor.
    """
    import av  # deferred: only the writer needs PyAV

    h, w = frames.shape[1:3]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.max_b_frames = 0
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1",
                          "x264-params": "mbtree=0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def save_masks(path: str, masks: np.ndarray) -> None:
    """Saves (T, H, W) bool masks as a compressed ``.npz`` with key ``masks``.

    Equivalent to ``np.savez_compressed(path, masks=masks)`` but with a fixed
    zip timestamp, so the file bytes are reproducible.
    """
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(masks, dtype=bool), allow_pickle=False)
    info = zipfile.ZipInfo("masks.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, buf.getvalue())


def load_masks(npz_path: str) -> np.ndarray:
    """Loads per-frame actor masks as a (T, H, W) bool array."""
    with np.load(npz_path, allow_pickle=False) as data:
        return data["masks"].astype(bool)


def load_image_mask(png_path: str) -> np.ndarray:
    """Loads a binary object-mask PNG as an (H, W) bool array."""
    with Image.open(png_path) as img:
        return np.asarray(img.convert("L")) > 127


def _write_json(path: str, obj: Any) -> Any:
    """Writes deterministic, human-readable JSON; returns ``obj`` as read back."""
    text = json.dumps(obj, indent=2) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return json.loads(text)


# --------------------------------------------------------------------------
# Labels and splits
# --------------------------------------------------------------------------


def balanced_labels(num_items: int, num_classes: int, seed: int) -> np.ndarray:
    """Class-balanced labels (counts differ by at most one), shuffled by seed."""
    base = np.arange(num_items) % num_classes
    return np.random.default_rng([seed, _LABEL_STREAM]).permutation(base)


def stratified_splits(labels: np.ndarray, ratios: Sequence[float], seed: int) -> list[int]:
    """Assigns each item a split index, per class in proportion to ``ratios``.

    Returns:
        A list with one split index (into ``ratios``) per item.
    """
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    cum = np.cumsum(np.asarray(ratios, dtype=np.float64) / float(sum(ratios)))
    out = [0] * len(labels)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(cum * len(idx)).astype(int)
        for pos, item in enumerate(idx):
            out[int(item)] = int(np.searchsorted(bounds, pos, side="right"))
    counts = np.bincount(out, minlength=len(ratios))
    for i, (ratio, count) in enumerate(zip(ratios, counts)):
        if ratio > 0 and count == 0:
            logger.warning("split %d (ratio %.2f) gets no items: %d items over %d classes are too few for the "
                           "per-class rounding; generate more", i, ratio, len(labels), len(np.unique(labels)))
    return out


def _check_counts(num_items: int, num_classes: int, max_classes: int, seed: int,
                  ratios: Sequence[float], num_splits: int) -> None:
    """Validates the item count, class count, seed and split ratios."""
    if len(ratios) != num_splits or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"need {num_splits} non-negative split ratios, got {list(ratios)}")
    if not 1 <= num_classes <= max_classes:
        raise ValueError(f"num_classes must be in [1, {max_classes}], got {num_classes}")
    if num_items < num_classes:
        raise ValueError(f"need at least one item per class ({num_items} < {num_classes})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


# --------------------------------------------------------------------------
# Video data set
# --------------------------------------------------------------------------


def _make_video_item(job: tuple[str, int, int, int, str, VideoKnobs]) -> dict:
    """Renders, encodes and writes one video and its masks; returns its info."""
    out_dir, seed, index, label, split, knobs = job
    scene = _sample_scene(video_rng(seed, index), knobs, None, None, None, None)
    frames, masks = _render_scene(scene, VIDEO_CLASSES[label])
    stem = f"{index:06d}"
    rel_video, rel_mask = f"videos/{stem}.mp4", f"masks/{stem}.npz"
    write_mp4(os.path.join(out_dir, rel_video), frames, scene.fps, knobs.crf)
    save_masks(os.path.join(out_dir, rel_mask), masks)
    t, h, w = masks.shape
    return {"index": index, "path": rel_video, "mask": rel_mask, "label": label,
            "class": VIDEO_CLASSES[label], "split": split, "fps": scene.fps, "frames": t,
            "width": w, "height": h, "actor_shape": scene.actor.shape,
            "actor_diameter": round(2 * scene.actor.radius, 2)}


def _write_csvs(out_dir: str, items: list[dict], splits: Sequence[str]) -> None:
    """Writes ``<split>.csv`` files with lines ``relative/path.mp4 LABEL``."""
    for split in splits:
        lines = [f"{it['path']} {it['label']}\n" for it in items if it["split"] == split]
        with open(os.path.join(out_dir, f"{split}.csv"), "w", encoding="utf-8") as f:
            f.writelines(lines)


def generate_video_dataset(out_dir: str, num_videos: int = DEFAULT_NUM_VIDEOS, seed: int = 0,
                           num_classes: int = 8, *,
                           split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
                           difficulty: str = "medium", num_workers: int = 1,
                           progress: bool = False, **knobs: Any) -> dict:
    """Generates the synthetic action-recognition set in the Kinetics layout.

    Writes ``videos/NNNNNN.mp4``, ``masks/NNNNNN.npz``, ``train.csv``,
    ``val.csv``, ``test.csv``, ``classnames.json`` and ``meta.json`` under
    ``out_dir``. Video ``i`` depends only on ``(seed, i, label_i, knobs)``.

    Args:
        out_dir: Output directory (created if needed).
        num_videos: Number of videos (labels are class-balanced).
        seed: Non-negative seed; the same seed gives the same set.
        num_classes: Uses the first ``num_classes`` of :data:`VIDEO_CLASSES`.
        split_ratios: train/val/test proportions, applied per class.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        num_workers: Worker processes (<= 1: in-process). Output is identical.
        progress: Show a tqdm progress bar.
        **knobs: :class:`VideoKnobs` overrides.

    Returns:
        The meta dict that is also written to ``meta.json``.
    """
    _check_counts(num_videos, num_classes, len(VIDEO_CLASSES), seed, split_ratios, 3)
    vknobs = make_knobs(VideoKnobs, difficulty, **knobs)
    for sub in ("videos", "masks"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    labels = balanced_labels(num_videos, num_classes, seed)
    splits = stratified_splits(labels, split_ratios, seed)
    jobs = [(out_dir, seed, i, int(labels[i]), SPLITS[splits[i]], vknobs)
            for i in range(num_videos)]
    items = list(run_jobs(_make_video_item, jobs, num_workers, progress, "videos", chunksize=4))
    _write_csvs(out_dir, items, SPLITS)
    classnames = {name: i for i, name in enumerate(VIDEO_CLASSES[:num_classes])}
    _write_json(os.path.join(out_dir, "classnames.json"), classnames)
    meta = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION,
            "kind": "video", "seed": seed, "num_videos": num_videos, "num_classes": num_classes,
            "classes": VIDEO_CLASSES[:num_classes], "split_ratios": list(split_ratios),
            "difficulty": difficulty, "knobs": asdict(vknobs), "videos": items}
    return _write_json(os.path.join(out_dir, "meta.json"), meta)


# --------------------------------------------------------------------------
# Image data set
# --------------------------------------------------------------------------


def _paint_object(image: np.ndarray, rng: np.random.Generator, class_name: str,
                  knobs: ImageKnobs) -> np.ndarray:
    """Paints the class object (shape x fill pattern) in place; returns its mask."""
    shape, pattern = class_name.rsplit("_", 1)
    h, w = image.shape[:2]
    radius = max(_uniform(rng, knobs.object_size) * min(h, w) / 2, 4.0)
    center = (rng.uniform(radius, w - radius), rng.uniform(radius, h - radius))
    color = _random_color(rng, (0.6, 1.0), (0.6, 1.0))
    mark_color, period = _contrast_color(color), max(radius * 0.45, 3.0)
    region, lx, ly = _local_coords(*center, radius + 1, rng.uniform(0, 2 * math.pi), h, w)
    body = _SHAPES[shape](lx, ly, radius)
    patch = image[region]
    patch[body] = color.astype(np.uint8)
    patch[body & _fill_marks(pattern, lx / period, ly / period)] = mark_color.astype(np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[region] = body
    return mask


def _fill_marks(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the fill ``pattern`` paints its contrast colour, at object coordinates in units of its period.

    Area fractions of the marks: solid 0, striped 1/2, dotted pi * 0.3^2 (about 0.28), checkered 1/2,
    gridded 1 - 0.72^2 (about 0.48).
    """
    cu, cv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5  # offset from the centre of the period cell
    if pattern == "solid":
        return np.zeros(np.broadcast(u, v).shape, dtype=bool)
    if pattern == "striped":
        return np.broadcast_to(np.floor(u).astype(np.int64) % 2 == 0, np.broadcast(u, v).shape)
    if pattern == "dotted":
        return cu * cu + cv * cv <= 0.3 ** 2
    if pattern == "checkered":
        return (np.floor(u).astype(np.int64) + np.floor(v).astype(np.int64)) % 2 == 0
    if pattern == "gridded":
        return (np.abs(cu) >= 0.36) | (np.abs(cv) >= 0.36)
    raise ValueError(f"unknown fill pattern {pattern!r}; expected one of {_IMAGE_PATTERNS}")


def _render_image(rng: np.random.Generator, label: int, knobs: ImageKnobs,
                  height: Optional[int], width: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """Renders one image from validated knobs; see :func:`render_image`."""
    h, w = _sample_size(rng, knobs)
    h, w = height or h, width or w
    image = _make_background(rng, h, w, knobs.clutter)
    n = int(rng.integers(knobs.num_distractors[0], knobs.num_distractors[1] + 1))
    for _ in range(n):
        _Sprite("ellipse", _uniform(rng, knobs.distractor_size) * min(h, w) / 2,
                _random_color(rng, (0.2, 0.9), (0.3, 1.0)), _uniform(rng, (0.4, 0.8)),
                (rng.uniform(0, w), rng.uniform(0, h)), (0.0, 0.0),
                rng.uniform(0, 2 * math.pi)).paint(image, 0.0)
    mask = _paint_object(image, rng, IMAGE_CLASSES[label], knobs)
    pool, offsets = _sample_noise(rng, h, w, 1, knobs.noise)
    return _add_noise(image, pool, offsets[0]), mask


def render_image(rng: np.random.Generator, label: int, *, height: Optional[int] = None,
                 width: Optional[int] = None, difficulty: str = "medium",
                 **knobs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Renders one image of class ``label`` (see :data:`IMAGE_CLASSES`).

    Args:
        rng: Source of randomness (e.g. :func:`image_rng`).
        label: Class id, an index into :data:`IMAGE_CLASSES`.
        height: Image height; drawn from the knobs if None.
        width: Image width; drawn from the knobs if None.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        **knobs: :class:`ImageKnobs` overrides.

    Returns:
        ``(image, mask)``: uint8 (H, W, 3) RGB and bool (H, W) object mask.
    """
    if not 0 <= label < len(IMAGE_CLASSES):
        raise ValueError(f"label must be in [0, {len(IMAGE_CLASSES)}), got {label}")
    return _render_image(rng, label, make_knobs(ImageKnobs, difficulty, **knobs), height, width)


def _make_image_item(job: tuple[str, int, int, int, str, ImageKnobs]) -> dict:
    """Renders and writes one image and its mask PNG; returns its info."""
    out_dir, seed, index, label, split, knobs = job
    image, mask = _render_image(image_rng(seed, index), label, knobs, None, None)
    name = IMAGE_CLASSES[label]
    rel_image = f"{split}/{name}/{index:06d}.png"
    rel_mask = f"masks/{split}/{name}/{index:06d}.png"
    for rel, arr in ((rel_image, image), (rel_mask, mask.astype(np.uint8) * 255)):
        os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
        Image.fromarray(arr).save(os.path.join(out_dir, rel))
    return {"index": index, "path": rel_image, "mask": rel_mask, "label": label, "class": name,
            "split": split, "width": image.shape[1], "height": image.shape[0]}


def generate_image_dataset(out_dir: str, num_images: int = DEFAULT_NUM_IMAGES, seed: int = 0,
                           num_classes: int = DEFAULT_IMAGE_CLASSES, *,
                           split_ratios: Sequence[float] = (0.8, 0.2),
                           difficulty: str = "medium", num_workers: int = 1,
                           progress: bool = False, **knobs: Any) -> dict:
    """Generates the synthetic image set in the ImageNet folder layout.

    Writes ``train/<class>/NNNNNN.png``, ``val/<class>/NNNNNN.png``, binary
    masks at ``masks/<split>/<class>/NNNNNN.png`` (0/255), ``classnames.json``
    and ``meta.json``. Every class directory exists in both splits.
    ``classnames.json`` holds the labels the folder loader uses (sorted folder
    names); ``meta.json``'s per-image ``label`` is the :data:`IMAGE_CLASSES`
    index that :func:`render_image` takes.

    Args:
        out_dir: Output directory (created if needed).
        num_images: Number of images (labels are class-balanced).
        seed: Non-negative seed; the same seed gives the same set.
        num_classes: Uses the first ``num_classes`` of :data:`IMAGE_CLASSES`.
        split_ratios: train/val proportions, applied per class.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        num_workers: Worker processes (<= 1: in-process). Output is identical.
        progress: Show a tqdm progress bar.
        **knobs: :class:`ImageKnobs` overrides.

    Returns:
        The meta dict that is also written to ``meta.json``.
    """
    _check_counts(num_images, num_classes, len(IMAGE_CLASSES), seed, split_ratios, 2)
    iknobs = make_knobs(ImageKnobs, difficulty, **knobs)
    labels = balanced_labels(num_images, num_classes, seed)
    splits = stratified_splits(labels, split_ratios, seed)
    for split in SPLITS[:2]:
        for name in IMAGE_CLASSES[:num_classes]:
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    jobs = [(out_dir, seed, i, int(labels[i]), SPLITS[splits[i]], iknobs)
            for i in range(num_images)]
    items = list(run_jobs(_make_image_item, jobs, num_workers, progress, "images", chunksize=4))
    # Folder-layout loaders (ours, torchvision's ImageFolder) number the classes by sorted folder name.
    classnames = {name: i for i, name in enumerate(sorted(IMAGE_CLASSES[:num_classes]))}
    _write_json(os.path.join(out_dir, "classnames.json"), classnames)
    meta = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION,
            "kind": "image", "seed": seed, "num_images": num_images, "num_classes": num_classes,
            "classes": IMAGE_CLASSES[:num_classes], "split_ratios": list(split_ratios),
            "difficulty": difficulty, "knobs": asdict(iknobs), "images": items}
    return _write_json(os.path.join(out_dir, "meta.json"), meta)
