"""Generator 2.0.0 scenes: a hand-held camera over a textured world, distractors that move like actors.

Everything is placed in world coordinates (continuous pixels of a background larger than the frame, pixel
``j`` covering ``[j, j + 1)``); each frame is the camera's view of the world: it looks at ``centers[i]`` with
``scales[i]`` frame pixels per world pixel, so the background slides by the pan, shakes with the hand-held
jitter and grows or shrinks with the zoom. The label picks the actor's trajectory *in the world*: what the
actor does relative to the scene, which the camera moves on screen as it moves everything else. The
distractors follow straight drifts or class trajectories of their own, drawn before the label is looked at,
and never have the actor's look (outline, marker dot and checkered body).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from iared_video.synthetic.backgrounds import Band, make_background, sample_bands
from iared_video.synthetic.knobs import ACTOR_SHAPES, VIDEO_CLASSES, VideoKnobs
from iared_video.synthetic.sprites import TRAJECTORIES, Actor, Motion, Sprite
from iared_video.synthetic.streams import add_noise, random_color, sample_noise, uniform

__all__ = ["Camera", "Mover", "WorldScene", "sample_camera", "sample_movers", "place_actor", "sample_world_scene",
           "render_world_scene", "SHAKE_CORRELATION"]

#: Correlation of the hand-held shake between successive frames (an AR(1) process: a smooth tremor).
SHAKE_CORRELATION = 0.6


@dataclass
class Camera:
    """Per-frame camera: the world point at the frame's centre and the zoom (frame pixels per world pixel)."""

    centers: np.ndarray  # (T, 2) world (x, y)
    scales: np.ndarray  # (T,)
    height: int
    width: int

    def to_frame(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Frame coordinates (continuous, pixel ``j`` covers ``[j, j + 1)``) of world point (x, y) in frame i."""
        s = float(self.scales[i])
        return ((x - self.centers[i, 0]) * s + self.width / 2, (y - self.centers[i, 1]) * s + self.height / 2)

    def view(self, i: int) -> tuple[float, float, float, float]:
        """The world box ``(x0, y0, x1, y1)`` that frame i shows."""
        hw, hh = self.width / 2 / self.scales[i], self.height / 2 / self.scales[i]
        cx, cy = self.centers[i]
        return float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh)

    def warp(self, world: Image.Image, i: int) -> np.ndarray:
        """Frame i of the world image: (H, W, 3) uint8, bilinear (exact pixel copies for integer shifts at scale 1)."""
        s = float(self.scales[i])
        cx, cy = (float(v) for v in self.centers[i])
        coeffs = (1 / s, 0.0, cx - self.width / (2 * s), 0.0, 1 / s, cy - self.height / (2 * s))
        out = world.transform((self.width, self.height), Image.Transform.AFFINE, coeffs,
                              resample=Image.Resampling.BILINEAR)
        return np.array(out)


def sample_camera(rng: np.random.Generator, h: int, w: int, t: int,
                  knobs: VideoKnobs) -> tuple[Camera, tuple[int, int]]:
    """Draws the camera path (pan, shake, zoom) and the world size that covers every view.

    The pan travels ``camera_pan`` x short side at most, at constant speed in a random direction; the sway
    swings up to ``camera_sway`` x short side each way along x and along y (0.5-2 cycles, own phases); the
    shake is an AR(1) tremor of std ``camera_jitter`` x short side; the zoom goes geometrically from 1 to a scale drawn
    log-uniform in ``[1/(1+z), 1+z]``.

    Returns:
        The camera and the world's (height, width); the world has a 2-pixel border outside every view.
    """
    short = min(h, w)
    travel, angle = uniform(rng, (0.0, knobs.camera_pan)) * short, rng.uniform(0, 2 * math.pi)
    log_zoom = rng.uniform(-1.0, 1.0) * math.log1p(knobs.camera_zoom)
    eps = rng.standard_normal((t, 2))
    shake = np.empty((t, 2))
    shake[0] = eps[0]
    for i in range(1, t):
        shake[i] = SHAKE_CORRELATION * shake[i - 1] + math.sqrt(1 - SHAKE_CORRELATION ** 2) * eps[i]
    sway = rng.uniform(0.0, knobs.camera_sway, size=2) * short
    cycles, phases = rng.uniform(0.5, 2.0, size=2), rng.uniform(0, 2 * math.pi, size=2)
    u = np.arange(t) / (t - 1) if t > 1 else np.zeros(1)
    direction = np.array([math.cos(angle), math.sin(angle)])
    swing = sway * (np.sin(2 * math.pi * cycles * u[:, None] + phases) - np.sin(phases))
    centers = travel * (u[:, None] - 0.5) * direction + swing + knobs.camera_jitter * short * shake
    scales = np.exp(log_zoom * u)
    half = np.stack([w / 2 / scales, h / 2 / scales], axis=1)
    low, high = (centers - half).min(axis=0), (centers + half).max(axis=0)
    centers = centers - np.floor(low) + 2
    size = np.ceil(high - np.floor(low)).astype(int) + 4
    return Camera(centers, scales, h, w), (int(size[1]), int(size[0]))


@dataclass
class Mover:
    """A distractor in the world: a straight drift, or a class trajectory of its own (never the label's)."""

    sprite: Sprite  # start and drift in world coordinates
    trajectory: str | None
    motion: Motion

    def pose(self, u: float) -> tuple[float, float, float]:
        """World (x, y) and turn at normalized time u."""
        if self.trajectory is None:
            dx, dy, dtheta = self.sprite.drift[0] * u, self.sprite.drift[1] * u, 0.0
        else:
            dx, dy, dtheta = TRAJECTORIES[self.trajectory](self.motion, u)
        return self.sprite.start[0] + dx, self.sprite.start[1] + dy, self.sprite.theta + dtheta


def _sample_motion(rng: np.random.Generator, amplitude: float, knobs: VideoKnobs) -> Motion:
    """Motion sizes and directions for one trajectory (amplitude given in world pixels)."""
    return Motion(amplitude, math.radians(uniform(rng, knobs.rotation_degrees)), rng.uniform(0, 2 * math.pi),
                  rng.uniform(0, 2 * math.pi))


def sample_movers(rng: np.random.Generator, short: int, world: tuple[int, int], knobs: VideoKnobs) -> list[Mover]:
    """Distractors: solid or striped shapes anywhere in the world, each drifting or following a class trajectory.

    Every draw is made for every distractor (the branch only picks which are used), so the stream does not
    depend on which distractors move like actors.
    """
    movers = []
    for _ in range(int(rng.integers(knobs.num_distractors[0], knobs.num_distractors[1] + 1))):
        shape = str(rng.choice(ACTOR_SHAPES)) if knobs.distractor_shapes else "ellipse"
        radius = uniform(rng, knobs.distractor_size) * short / 2
        color = random_color(rng, (0.2, 0.9), (0.3, 1.0))
        start = (rng.uniform(0, world[1]), rng.uniform(0, world[0]))
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0, knobs.distractor_motion) * short
        sprite = Sprite(shape, radius, color, uniform(rng, (0.6, 1.0)), start,
                        (dist * math.cos(angle), dist * math.sin(angle)), rng.uniform(0, 2 * math.pi))
        stripes, period = random_color(rng, (0.2, 0.9), (0.3, 1.0)), uniform(rng, (0.35, 0.7))
        if rng.uniform() < knobs.striped_distractors:
            sprite.stripe_color, sprite.stripe_period = stripes, period
        actor_like = bool(rng.uniform() < knobs.actor_like_distractors)
        trajectory = VIDEO_CLASSES[int(rng.integers(len(VIDEO_CLASSES)))]
        motion = _sample_motion(rng, uniform(rng, knobs.motion_amplitude) * short, knobs)
        movers.append(Mover(sprite, trajectory if actor_like else None, motion))
    return movers


def place_actor(rng: np.random.Generator, camera: Camera, knobs: VideoKnobs) -> tuple[Actor, Motion]:
    """Actor look, start and motion sizes in the world; never looks at the label.

    The start is uniform over the part of the world that every frame shows, shrunk by the actor's radius
    and its displacement ``A``, so that every trajectory keeps the actor in every frame; ``A`` is capped to
    fit (a large pan or zoom-in leaves less room).
    """
    short = min(camera.height, camera.width)
    radius = max(uniform(rng, knobs.actor_size) * short / 2, 2.5)
    color = random_color(rng, (0.6, 1.0), (0.6, 1.0))
    shape = str(rng.choice(ACTOR_SHAPES))
    views = np.array([camera.view(i) for i in range(len(camera.scales))])
    x0, y0 = views[:, 0].max(), views[:, 1].max()
    x1, y1 = views[:, 2].min(), views[:, 3].min()
    margin = radius + 2
    room = min(x1 - x0, y1 - y0) / 2 - margin - 1
    amplitude = float(np.clip(uniform(rng, knobs.motion_amplitude) * short, 0.0, max(room, 0.0)))
    lo_x, hi_x = x0 + margin + amplitude, x1 - margin - amplitude
    lo_y, hi_y = y0 + margin + amplitude, y1 - margin - amplitude
    ux, uy = rng.uniform(), rng.uniform()
    start = (lo_x + ux * max(hi_x - lo_x, 0.0), lo_y + uy * max(hi_y - lo_y, 0.0))
    motion = _sample_motion(rng, amplitude, knobs)
    return Actor(shape, radius, color, start, rng.uniform(0, 2 * math.pi)), motion


@dataclass
class WorldScene:
    """Everything random about one 2.0.0 video, drawn before the label is used."""

    fps: int
    num_frames: int
    camera: Camera
    background: np.ndarray  # the world, (H_world, W_world, 3) uint8
    bands: list[Band]
    movers: list[Mover]
    actor: Actor
    motion: Motion
    checker: bool
    noise: np.ndarray | None = None
    noise_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))


def add_grain(rng: np.random.Generator, world: np.ndarray, sigma: float) -> np.ndarray:
    """The world with a fine static luminance texture: Gaussian noise on a half-resolution grid, upsampled
    bilinearly (blobs of 2-4 pixels) and scaled to std about ``sigma``; no draw when ``sigma`` is 0."""
    if sigma <= 0:
        return world
    h, w = world.shape[:2]
    cells = rng.standard_normal((h // 2 + 2, w // 2 + 2)).astype(np.float32)
    fine = np.asarray(Image.fromarray(cells).resize((w + 4, h + 4), Image.Resampling.BILINEAR))
    fine = fine[2:h + 2, 2:w + 2] * np.float32(sigma / max(float(fine.std()), 1e-6))
    return np.clip(world.astype(np.float32) + fine[..., None] + 0.5, 0, 255).astype(np.uint8)


def sample_world_scene(rng: np.random.Generator, knobs: VideoKnobs, h: int, w: int, t: int, fps: int) -> WorldScene:
    """Draws one 2.0.0 video's scene after its (h, w, t, fps): camera, world, distractors, actor, noise."""
    camera, world = sample_camera(rng, h, w, t, knobs)
    background = add_grain(rng, make_background(rng, *world, knobs.clutter), knobs.grain)
    bands = sample_bands(rng, *world, knobs)
    movers = sample_movers(rng, min(h, w), world, knobs)
    actor, motion = place_actor(rng, camera, knobs)
    noise, offsets = sample_noise(rng, h, w, t, knobs.noise)
    return WorldScene(fps, t, camera, background, bands, movers, actor, motion, knobs.actor_texture, noise, offsets)


def render_world_scene(scene: WorldScene, class_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Renders frames (T, H, W, 3) uint8 and actor masks (T, H, W) bool through the scene's camera."""
    cam, t = scene.camera, scene.num_frames
    frames = np.empty((t, cam.height, cam.width, 3), dtype=np.uint8)
    masks = np.zeros((t, cam.height, cam.width), dtype=bool)
    trajectory = TRAJECTORIES[class_name]
    still = Image.fromarray(scene.background)
    for i in range(t):
        u = i / (t - 1) if t > 1 else 0.0
        world = still
        if scene.bands:
            canvas = scene.background.copy()
            for band in scene.bands:
                band.paint(canvas, u)
            world = Image.fromarray(canvas)
        frame = cam.warp(world, i)
        s = float(cam.scales[i])
        for mover in scene.movers:
            x, y, theta = mover.pose(u)
            fx, fy = cam.to_frame(i, x, y)
            mover.sprite.draw(frame, fx - 0.5, fy - 0.5, mover.sprite.radius * s, theta)
        dx, dy, dtheta = trajectory(scene.motion, u)
        fx, fy = cam.to_frame(i, scene.actor.start[0] + dx, scene.actor.start[1] + dy)
        scene.actor.draw(frame, masks[i], fx - 0.5, fy - 0.5, scene.actor.radius * s, scene.actor.theta + dtheta,
                         checker=scene.checker)
        frames[i] = add_noise(frame, scene.noise, scene.noise_offsets[i])
    return frames, masks
