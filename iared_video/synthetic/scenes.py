"""Scenes and rendering: every random draw of one video, made before its label is used, then the frames.

Three generator versions: 1.2.0 (this module: a static camera, the actor the only thing that moves much), 1.2.1,
the default (1.2.0 with no width decord cannot read) and 2.0.0 (``world``: a hand-held camera over a textured
world, distractors that move like actors; also with decord-readable widths only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iared_video.synthetic.backgrounds import Band, make_background, sample_bands
from iared_video.synthetic.knobs import (
    CAMERA_VERSION,
    GENERATOR_VERSION,
    VIDEO_CLASSES,
    VIDEO_VERSIONS,
    VideoKnobs,
    make_knobs,
)
from iared_video.synthetic.sprites import TRAJECTORIES, Actor, Motion, Sprite, sample_actor, sample_sprites
from iared_video.synthetic.streams import add_noise, sample_noise, sample_video_spec
from iared_video.synthetic.world import WorldScene, render_world_scene, sample_world_scene

__all__ = ["Scene", "sample_noise", "add_noise", "sample_video_spec", "sample_scene", "render_scene", "render_video"]


@dataclass
class Scene:
    """Everything random about one video, drawn before the label is used."""

    fps: int
    num_frames: int
    background: np.ndarray
    bands: list[Band]
    sprites: list[Sprite]
    actor: Actor
    motion: Motion
    noise: np.ndarray | None = None
    noise_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))


def sample_scene(rng: np.random.Generator, knobs: VideoKnobs, height: int | None,
                  width: int | None, num_frames: int | None, fps: int | None,
                  version: str = GENERATOR_VERSION) -> Scene | WorldScene:
    """Draws one video's scene for generator ``version``; given sizes/length/fps override the draws."""
    if version not in VIDEO_VERSIONS:
        raise ValueError(f"unknown video generator version {version!r}")
    h, w, t, rate = sample_video_spec(rng, knobs, version)
    h, w, t, rate = height or h, width or w, num_frames or t, fps or rate
    if h % 2 or w % 2 or t < 1:
        raise ValueError(f"need even height/width and >= 1 frame, got {h}x{w}, {t} frames")
    if version == CAMERA_VERSION:
        return sample_world_scene(rng, knobs, h, w, t, rate)
    background = make_background(rng, h, w, knobs.clutter)
    bands, sprites = sample_bands(rng, h, w, knobs), sample_sprites(rng, h, w, knobs)
    actor, motion = sample_actor(rng, h, w, knobs)
    noise, offsets = sample_noise(rng, h, w, t, knobs.noise)
    return Scene(rate, t, background, bands, sprites, actor, motion, noise, offsets)


def render_scene(scene: Scene | WorldScene, class_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Renders frames (T, H, W, 3) uint8 and actor masks (T, H, W) bool."""
    if isinstance(scene, WorldScene):
        return render_world_scene(scene, class_name)
    t, (h, w) = scene.num_frames, scene.background.shape[:2]
    frames = np.empty((t, h, w, 3), dtype=np.uint8)
    masks = np.zeros((t, h, w), dtype=bool)
    trajectory = TRAJECTORIES[class_name]
    for i in range(t):
        u = i / (t - 1) if t > 1 else 0.0
        frame = scene.background.copy()
        for band in scene.bands:
            band.paint(frame, u)
        for sprite in scene.sprites:
            sprite.paint(frame, u)
        scene.actor.paint(frame, masks[i], *trajectory(scene.motion, u))
        frames[i] = add_noise(frame, scene.noise, scene.noise_offsets[i])
    return frames, masks


def render_video(rng: np.random.Generator, label: int, *, height: int | None = None,
                 width: int | None = None, num_frames: int | None = None,
                 fps: int | None = None, difficulty: str = "medium", version: str = GENERATOR_VERSION,
                 **knobs: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Renders one synthetic action video in memory.

    All randomness is drawn from ``rng`` before ``label`` is used, so two
    calls with the same rng state and different labels differ only in the
    actor's trajectory (their first frames are identical; with 2.0.0 the
    trajectory is the actor's in the world, seen through the moving camera).

    Args:
        rng: Source of randomness (e.g. :func:`video_rng`).
        label: Class id, an index into :data:`VIDEO_CLASSES`.
        height: Frame height (even); drawn from the knobs if None.
        width: Frame width (even); drawn from the knobs if None.
        num_frames: Frame count; drawn from the knobs if None.
        fps: Frame rate; drawn from ``fps_choices`` if None.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        version: Generator version (:data:`VIDEO_VERSIONS`: ``1.2.1``, the default, ``1.2.0`` or ``2.0.0``).
        **knobs: :class:`VideoKnobs` overrides.

    Returns:
        ``(frames, masks, fps)``: uint8 (T, H, W, 3) RGB frames, bool
        (T, H, W) actor masks and the integer frame rate.
    """
    if not 0 <= label < len(VIDEO_CLASSES):
        raise ValueError(f"label must be in [0, {len(VIDEO_CLASSES)}), got {label}")
    scene = sample_scene(rng, make_knobs(VideoKnobs, difficulty, version, **knobs), height, width,
                          num_frames, fps, version)
    frames, masks = render_scene(scene, VIDEO_CLASSES[label])
    return frames, masks, scene.fps
