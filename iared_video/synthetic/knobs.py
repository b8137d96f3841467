"""Knobs of the video and image generators: class lists, knob dataclasses, difficulty presets.

Everything a generated set depends on besides its seed lives here; ``meta.json`` records the
generator name and version below and the knob values, so a set can be recognised and regenerated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["GENERATOR_NAME", "GENERATOR_VERSION", "VIDEO_VERSIONS", "CAMERA_VERSION", "VIDEO_PRESETS",
           "CAMERA_KNOBS_OFF", "recorded_knobs",
           "VIDEO_CLASSES", "IMAGE_CLASSES", "IMAGE_SHAPES", "IMAGE_PATTERNS",
           "ACTOR_SHAPES", "DEFAULT_NUM_VIDEOS", "DEFAULT_NUM_IMAGES", "DEFAULT_IMAGE_CLASSES", "SPLITS",
           "VideoKnobs", "ImageKnobs", "VIDEO_DIFFICULTY", "IMAGE_DIFFICULTY", "make_knobs"]

#: The default video generator: 1.2.1, a still camera (1.2.0 with no width decord cannot read). 2.0.0 (a moving
#: hand-held camera over a textured world, distractors that move like actors, a textured actor) is selected with
#: ``version="2.0.0"``; it is not the default until the video backbone is shown to learn its sets.
#: ``VIDEO_VERSIONS`` lists every version that can still be generated; the image generator has not changed
#: since 1.2.0 but records the default version too.
GENERATOR_VERSION = "1.2.1"
VIDEO_VERSIONS = ("1.2.0", "1.2.1", "2.0.0")
#: The version whose renderer reads the camera knobs (the others are still-camera versions).
CAMERA_VERSION = "2.0.0"
#: The ``generator`` field of every ``meta.json`` written here (how tools recognise a generated set).
# Kept as it was before the generator became a package, so sets made then are still recognised.
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

IMAGE_SHAPES = ("disc", "square", "triangle", "cross", "star", "ring")
IMAGE_PATTERNS = ("solid", "striped", "dotted", "checkered", "gridded")
#: Image class names (shape x fill pattern) in id order, shape-major: the first five are the disc in each pattern.
IMAGE_CLASSES: list[str] = [f"{s}_{p}" for s in IMAGE_SHAPES for p in IMAGE_PATTERNS]

ACTOR_SHAPES = ("disc", "square", "triangle", "cross")
DEFAULT_NUM_VIDEOS = 3000
DEFAULT_NUM_IMAGES = 600
DEFAULT_IMAGE_CLASSES = 5
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoKnobs:
    """Every knob of the video generator (fractions are of the short side).

    The field defaults are the default generator's, 1.2.1 (a still camera: the 2.0.0-only knobs are off).
    Generator 2.0.0 is not the default yet (the main job's video backbone has not been shown to learn its
    sets): ``make_knobs(VideoKnobs, version="2.0.0")`` (``version=`` of ``generate_video_dataset`` and
    ``render_video``, ``tools/make_synthetic.py --generator-version 2.0.0``) applies its presets.

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
        camera_pan: Largest camera travel over the video (drawn uniform from
            0, random direction); 2.0.0 only.
        camera_jitter: Std of the hand-held shake of the camera per frame
            (smooth: successive shakes correlate at 0.6); 2.0.0 only.
        camera_sway: Largest amplitude of the camera's hand-held sway: a
            back-and-forth of 0.5-2 cycles over the video along x and along
            y (independent amplitudes and phases), so the view moves a lot
            while drifting little; 2.0.0 only.
        camera_zoom: Largest zoom change over the video: the last frame's
            scale is drawn log-uniform in [1/(1+z), 1+z]; 2.0.0 only.
        actor_like_distractors: Chance that a distractor follows a class
            trajectory (of a class drawn for it, never the label) instead of
            a straight drift; 2.0.0 only.
        actor_texture: Checker the actor's body in two shades of its colour,
            a look no distractor has; 2.0.0 only.
        grain: Std (0-255) of a fine static texture of the world (blobs of
            2-4 pixels, like foliage or gravel): what makes every background
            patch change when the camera moves; 2.0.0 only.
        striped_distractors: Chance that a distractor is striped in two
            colours instead of solid; 2.0.0 only.
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
    camera_pan: float = 0.0
    camera_jitter: float = 0.0
    camera_sway: float = 0.0
    camera_zoom: float = 0.0
    actor_like_distractors: float = 0.0
    actor_texture: bool = False
    grain: float = 0.0
    striped_distractors: float = 0.0


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


#: The knobs that only the 2.0.0 generator reads, at the values that turn them off.
CAMERA_KNOBS_OFF: dict[str, Any] = dict(camera_pan=0.0, camera_jitter=0.0, camera_sway=0.0, camera_zoom=0.0,
                                        actor_like_distractors=0.0, actor_texture=False, grain=0.0,
                                        striped_distractors=0.0)
#: The 2.0.0 medium knobs (a hand-held camera over a grainy world, distractors that move like actors), applied to
#: the :class:`VideoKnobs` defaults, which are the still-camera versions' (1.2.0, 1.2.1).
_V2_DEFAULTS: dict[str, Any] = dict(actor_size=(0.18, 0.24), motion_amplitude=(0.3, 0.45), clutter=1.0,
                                    num_distractors=(2, 4), distractor_size=(0.12, 0.26), distractor_motion=0.35,
                                    distractor_shapes=True, noise=2.0, camera_pan=0.15, camera_jitter=0.008,
                                    camera_sway=0.1, camera_zoom=0.1, actor_like_distractors=0.5,
                                    actor_texture=True, grain=40.0, striped_distractors=0.5)
#: The still-camera presets: with ``version="1.2.0"`` a set made by 1.2.0 is regenerated byte for byte; 1.2.1
#: uses the same knobs and differs only in the widths decord cannot read.
_V1_PRESETS: dict[str, dict[str, Any]] = {
    "easy": dict(clutter=0.1, num_distractors=(0, 1), distractor_motion=0.0),
    "medium": {},
    "hard": dict(min_short_side=112, max_short_side=224, max_frames=64, actor_size=(0.05, 0.09),
                 motion_amplitude=(0.3, 0.45), clutter=1.6, num_distractors=(4, 8), distractor_motion=0.3,
                 distractor_shapes=True, background_motion=1.0, noise=5.0),
}
#: Knob presets per generator version and difficulty (applied to the :class:`VideoKnobs` defaults).
VIDEO_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "1.2.0": _V1_PRESETS,
    "1.2.1": _V1_PRESETS,
    "2.0.0": {
        "easy": {**_V2_DEFAULTS, **dict(camera_pan=0.08, camera_jitter=0.004, camera_sway=0.03, camera_zoom=0.05,
                                        grain=12.0, num_distractors=(1, 2), actor_like_distractors=0.25)},
        "medium": dict(_V2_DEFAULTS),
        "hard": {**_V2_DEFAULTS, **dict(actor_size=(0.12, 0.18), camera_pan=0.2, camera_jitter=0.012,
                                        camera_sway=0.15, camera_zoom=0.15, grain=48.0, num_distractors=(4, 6),
                                        actor_like_distractors=0.75, background_motion=1.0, noise=4.0)},
    },
}
#: The difficulty presets of the default generator version.
VIDEO_DIFFICULTY: dict[str, dict[str, Any]] = VIDEO_PRESETS[GENERATOR_VERSION]
IMAGE_DIFFICULTY: dict[str, dict[str, Any]] = {
    "easy": dict(object_size=(0.4, 0.6), clutter=0.3, num_distractors=(0, 2), noise=0.0),
    "medium": {},
    "hard": dict(object_size=(0.15, 0.3), clutter=1.6, num_distractors=(4, 8), noise=4.0),
}


def make_knobs(cls: type, difficulty: str = "medium", version: str = GENERATOR_VERSION, **overrides: Any) -> Any:
    """Builds a knob dataclass from a difficulty preset plus overrides.

    Args:
        cls: :class:`VideoKnobs` or :class:`ImageKnobs`.
        difficulty: ``easy``, ``medium`` or ``hard``.
        version: Video generator version whose presets apply (one of :data:`VIDEO_VERSIONS`); images have one.
        **overrides: Knob values that replace the preset's.

    Returns:
        The validated knob instance.
    """
    if cls is VideoKnobs and version not in VIDEO_PRESETS:
        raise ValueError(f"video generator version must be one of {list(VIDEO_VERSIONS)}, got {version!r}")
    presets = VIDEO_PRESETS[version] if cls is VideoKnobs else IMAGE_DIFFICULTY
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
    if cls is VideoKnobs and version != CAMERA_VERSION:
        used = sorted(k for k, off in CAMERA_KNOBS_OFF.items() if getattr(knobs, k) != off)
        if used:
            raise ValueError(f"knob(s) {used} need video generator version {CAMERA_VERSION}, not {version}")
    return knobs


def recorded_knobs(knobs: VideoKnobs, version: str) -> dict[str, Any]:
    """The knobs ``meta.json`` records for a video set of ``version``: all of them for 2.0.0; the still-camera
    versions read none of the camera knobs, so their ``meta.json`` stays as 1.2.0 and 1.2.1 wrote it."""
    values = asdict(knobs)
    if version == CAMERA_VERSION:
        return values
    return {k: v for k, v in values.items() if k not in CAMERA_KNOBS_OFF}


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
    camera = [getattr(knobs, k) for k in ("camera_pan", "camera_jitter", "camera_sway", "camera_zoom")
              if hasattr(knobs, k)]
    chances = [getattr(knobs, k) for k in ("actor_like_distractors", "striped_distractors") if hasattr(knobs, k)]
    if min(camera, default=0.0) < 0 or getattr(knobs, "grain", 0.0) < 0 or not all(0 <= c <= 1 for c in chances):
        raise ValueError("camera_pan, camera_jitter, camera_sway, camera_zoom and grain must be >= 0, "
                         "actor_like_distractors and striped_distractors in [0, 1]")
