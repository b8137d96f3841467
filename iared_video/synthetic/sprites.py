"""Sprites: drifting distractors, the class-carrying actor and the trajectories the labels pick."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from iared_video.synthetic.knobs import ACTOR_SHAPES, VIDEO_CLASSES, VideoKnobs
from iared_video.synthetic.shapes import SHAPES, local_coords
from iared_video.synthetic.streams import contrast_color, random_color, uniform

__all__ = ["Sprite", "sample_sprites", "Actor", "Motion", "TRAJECTORIES", "sample_actor"]


@dataclass
class Sprite:
    """A distractor: a solid (or striped), semi-transparent shape drifting linearly."""

    shape: str
    radius: float
    color: np.ndarray
    alpha: float
    start: tuple[float, float]
    drift: tuple[float, float]
    theta: float
    stripe_color: np.ndarray | None = None  # stripes of this colour across the shape (generator 2.0.0)
    stripe_period: float = 0.0  # half-period of the stripes, a fraction of the radius

    def paint(self, frame: np.ndarray, u: float) -> None:
        """Paints the sprite at normalized time ``u`` into ``frame`` in place."""
        cx, cy = self.start[0] + self.drift[0] * u, self.start[1] + self.drift[1] * u
        self.draw(frame, cx, cy, self.radius, self.theta)

    def draw(self, frame: np.ndarray, cx: float, cy: float, radius: float, theta: float) -> None:
        """Paints the sprite's shape centred at pixel (cx, cy) with ``radius`` and turn ``theta``, in place."""
        loc = local_coords(cx, cy, radius + 1, theta, *frame.shape[:2])
        if loc is None:
            return
        region, lx, ly = loc
        inside = SHAPES[self.shape](lx, ly, radius)
        color = self.color
        if self.stripe_color is not None:
            band = (np.floor(lx / max(self.stripe_period * radius, 1.5)) % 2 == 1)[inside][:, None]
            color = np.where(band, self.stripe_color, self.color)
        patch = frame[region]
        patch[inside] = ((1 - self.alpha) * patch[inside] + self.alpha * color + 0.5).astype(np.uint8)


def sample_sprites(rng: np.random.Generator, h: int, w: int, knobs: VideoKnobs) -> list[Sprite]:
    """Distractors drifting in random, label-independent directions."""
    short, sprites = min(h, w), []
    for _ in range(int(rng.integers(knobs.num_distractors[0], knobs.num_distractors[1] + 1))):
        shape = str(rng.choice(ACTOR_SHAPES)) if knobs.distractor_shapes else "ellipse"
        radius = uniform(rng, knobs.distractor_size) * short / 2
        color = random_color(rng, (0.2, 0.9), (0.3, 1.0))
        start = (rng.uniform(0, w), rng.uniform(0, h))
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0, knobs.distractor_motion) * short
        drift = (dist * math.cos(angle), dist * math.sin(angle))
        sprites.append(Sprite(shape, radius, color, uniform(rng, (0.6, 1.0)), start, drift,
                               rng.uniform(0, 2 * math.pi)))
    return sprites


@dataclass
class Actor:
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
        self.draw(frame, mask, self.start[0] + dx, self.start[1] + dy, self.radius, self.theta + dtheta)

    def draw(self, frame: np.ndarray, mask: np.ndarray, cx: float, cy: float, r: float, theta: float,
             checker: bool = False) -> None:
        """Paints the actor centred at pixel (cx, cy) with radius ``r`` and turn ``theta``; fills its mask.

        With ``checker`` the body inside the outline is a checkerboard (cells of 0.6 r, at least 2.5 pixels,
        turning with the actor) of the colour and a shade at 55% of it: a look no distractor has.
        """
        loc = local_coords(cx, cy, r + 1, theta, *frame.shape[:2])
        if loc is None:
            return
        region, lx, ly = loc
        body = SHAPES[self.shape](lx, ly, r)
        inner = SHAPES[self.shape](lx, ly, r - 1.0)
        # radius 0.35 r at 0.5 r from the centre (1.2.0; radius 0.2 r at 0.45 r before, where a 64-pixel
        # video's 3-pixel dot left the rotation pair at chance: docs/experiment_log.md, "Generator 1.2.0")
        marker = (lx - 0.5 * r) ** 2 + ly * ly <= max(1.5, 0.35 * r) ** 2
        contrast, patch = contrast_color(self.color).astype(np.uint8), frame[region]
        patch[body] = contrast
        patch[inner] = self.color.astype(np.uint8)
        if checker:
            cell = max(0.6 * r, 2.5)
            dark = (np.floor(lx / cell) + np.floor(ly / cell)) % 2 == 1
            patch[inner & dark] = (0.55 * self.color).astype(np.uint8)
        patch[inner & marker] = contrast
        mask[region] |= body


@dataclass
class Motion:
    """Label-independent motion parameters; the label only picks a trajectory."""

    amplitude: float
    rotation: float
    direction: float
    phase: float


def _circle(m: Motion, u: float, sign: float) -> tuple[float, float, float]:
    """Offset on a full circle through the start point (sign>0: clockwise)."""
    rc, a = m.amplitude / 2, m.phase + sign * 2 * math.pi * u
    return rc * (math.cos(a) - math.cos(m.phase)), rc * (math.sin(a) - math.sin(m.phase)), 0.0


def _go_and_return(m: Motion, u: float) -> tuple[float, float, float]:
    """Out along a random direction and back to the start."""
    d = m.amplitude * math.sin(math.pi * u)
    return d * math.cos(m.direction), d * math.sin(m.direction), 0.0


TRAJECTORIES: dict[str, Callable[[Motion, float], tuple[float, float, float]]] = {
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
assert list(TRAJECTORIES) == VIDEO_CLASSES


def sample_actor(rng: np.random.Generator, h: int, w: int,
                  knobs: VideoKnobs) -> tuple[Actor, Motion]:
    """Actor appearance, start pose and motion sizes; never looks at the label.

    The start point is uniform over the area from which *every* trajectory
    (largest displacement ``amplitude`` in any direction) stays in frame.
    """
    short = min(h, w)
    radius = max(uniform(rng, knobs.actor_size) * short / 2, 2.5)
    color = random_color(rng, (0.6, 1.0), (0.6, 1.0))
    shape = str(rng.choice(ACTOR_SHAPES))
    margin = radius + 2
    amplitude = min(uniform(rng, knobs.motion_amplitude) * short, short / 2 - margin - 1)
    amplitude = max(amplitude, 0.0)
    start = (rng.uniform(margin + amplitude, w - margin - amplitude),
             rng.uniform(margin + amplitude, h - margin - amplitude))
    motion = Motion(amplitude, math.radians(uniform(rng, knobs.rotation_degrees)),
                     rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))
    return Actor(shape, radius, color, start, rng.uniform(0, 2 * math.pi)), motion
