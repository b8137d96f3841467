"""Temporal sampling of clips (PySlowFast / TimeSformer rule), as pure functions.

A clip is ``num_frames`` frames taken ``sampling_rate`` frames apart at
``target_fps``. In the video's own frame rate the clip therefore spans
``num_frames * sampling_rate * video_fps / target_fps`` source frames. The
window is placed at a random start (training), in the centre (one clip), or at
``num_clips`` evenly spaced positions (multi-view testing); the frame indices
are a linspace over the window, clamped to ``[0, video_frames - 1]`` so that a
video shorter than the window repeats its frames instead of failing.

The random training window is pytorchvideo's ``RandomClipSampler`` (``make_clip_sampler("random")``), given
durations in source frames: its start is ``random.uniform(0, max(video_frames - clip_size, 0))``, the rule
PySlowFast and TimeSformer use. The test views are not pytorchvideo's ``constant_clips_per_video``: that
sampler starts view ``k`` of ``N`` at ``k * delta / N`` (PySlowFast's default; the last view stops
``delta / N`` before the end, and a single view is the video's first window), while the views here start at
``k * delta / (N - 1)``, the first at the video's start and the last at its end, and a single view is
centred (PySlowFast's ``DATA.USE_OFFSET_SAMPLING``, without its floor). Kept because one centred view is the
validation clip, and because the test numbers of the project were measured with these views.

``segment_indices`` is the other rule (TSN; TimeSformer on Something-Something): the whole video is cut
into ``num_frames`` equal segments and one frame is taken from each, at a random place in training and at
the same place in every segment for a test view, so every clip spans the whole video whatever its length
and frame rate.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator

import numpy as np
from pytorchvideo.data.clip_sampling import make_clip_sampler

from iared_video.config.choices import TEMPORAL_SAMPLINGS

__all__ = ["TEMPORAL_SAMPLINGS", "clip_size_in_source_frames", "clip_window", "random_clip_start", "linspace_indices",
           "clip_indices", "segment_indices", "view_indices"]


def clip_size_in_source_frames(num_frames: int, sampling_rate: int, video_fps: float, target_fps: float) -> float:
    """Length of one clip in frames of the source video.

    Args:
        num_frames: frames per clip.
        sampling_rate: stride between sampled frames, in frames at ``target_fps``.
        video_fps: frame rate of the video; a non-positive or non-finite value means unknown,
            in which case the video is assumed to run at ``target_fps``.
        target_fps: frame rate the sampling rate refers to.
    """
    if not math.isfinite(video_fps) or video_fps <= 0:
        video_fps = target_fps
    return num_frames * sampling_rate * video_fps / target_fps


def clip_window(
    video_frames: int, clip_size: float, clip_idx: int, num_clips: int, rng: random.Random | None = None
) -> tuple[float, float]:
    """Start and end (inclusive, fractional) of a clip window in source frames.

    Args:
        video_frames: number of frames in the video.
        clip_size: window length in source frames (see ``clip_size_in_source_frames``).
        clip_idx: -1 for a random start (training); otherwise the index of the window among
            ``num_clips`` evenly spaced ones: ``start = delta * clip_idx / (num_clips - 1)``
            with ``delta = max(video_frames - clip_size, 0)``; one clip is centred.
        num_clips: number of evenly spaced windows (ignored when ``clip_idx`` is -1).
        rng: random source for ``clip_idx == -1`` (defaults to the ``random`` module).
    """
    delta = max(video_frames - clip_size, 0.0)
    if clip_idx == -1:
        start = random_clip_start(video_frames, clip_size, rng)
    elif not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx {clip_idx} out of range for {num_clips} clips")
    elif num_clips == 1:
        start = delta / 2.0
    else:
        start = delta * clip_idx / (num_clips - 1)
    return start, start + clip_size - 1.0


@contextlib.contextmanager
def _random_module_state(rng: random.Random | None) -> Iterator[None]:
    """Run the block with the ``random`` module drawing from ``rng``'s state (advanced by the draws); None: as is."""
    if rng is None:
        yield
        return
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


def random_clip_start(video_frames: int, clip_size: float, rng: random.Random | None = None) -> float:
    """Start of a random clip window (source frames), from pytorchvideo's ``RandomClipSampler``.

    The sampler works in any time unit; given frames it draws ``uniform(0, max(video_frames - clip_size, 0))``
    from the ``random`` module (or from ``rng``, whose state advances as if it had drawn).
    """
    sampler = make_clip_sampler("random", clip_size)
    with _random_module_state(rng):
        info = sampler(0.0, video_frames, {})
    return float(info.clip_start_sec)


def linspace_indices(start: float, end: float, num_frames: int, video_frames: int) -> np.ndarray:
    """``num_frames`` integer indices evenly spaced over ``[start, end]``, clamped to the video.

    Fractional positions are truncated towards zero after clamping (PySlowFast's
    ``torch.linspace(...).clamp(0, n - 1).long()``).
    """
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {video_frames}")
    positions = np.linspace(start, end, num_frames)
    return np.clip(positions, 0, video_frames - 1).astype(np.int64)


def clip_indices(
    video_frames: int,
    video_fps: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float,
    clip_idx: int,
    num_clips: int,
    rng: random.Random | None = None,
) -> np.ndarray:
    """Frame indices of one clip: the whole sampling rule in one call.

    Returns:
        int64 array of ``num_frames`` indices in ``[0, video_frames - 1]`` (non-decreasing).
    """
    size = clip_size_in_source_frames(num_frames, sampling_rate, video_fps, target_fps)
    start, end = clip_window(video_frames, size, clip_idx, num_clips, rng)
    return linspace_indices(start, end, num_frames, video_frames)


def segment_indices(
    video_frames: int, num_frames: int, clip_idx: int, num_clips: int, rng: random.Random | None = None
) -> np.ndarray:
    """One frame from each of ``num_frames`` equal segments of the whole video.

    Segment ``i`` covers source frames ``[i * n / T, (i + 1) * n / T)`` (``n = video_frames``,
    ``T = num_frames``); the frame taken is ``floor(i * n / T + u * n / T)``, with ``u`` drawn
    uniformly from [0, 1) per segment for ``clip_idx == -1`` (training) and ``u = (clip_idx + 0.5) /
    num_clips`` for test view ``clip_idx`` (one view: each segment's middle). A video with fewer
    frames than segments repeats frames.
    """
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {video_frames}")
    if clip_idx == -1:
        offsets = np.array([(rng or random).random() for _ in range(num_frames)])
    elif not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx {clip_idx} out of range for {num_clips} clips")
    else:
        offsets = np.full(num_frames, (clip_idx + 0.5) / num_clips)
    positions = (np.arange(num_frames) + offsets) * (video_frames / num_frames)
    return np.clip(np.floor(positions), 0, video_frames - 1).astype(np.int64)


def view_indices(
    sampling: str,
    video_frames: int,
    video_fps: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float,
    clip_idx: int,
    num_clips: int,
    rng: random.Random | None = None,
) -> np.ndarray:
    """Frame indices under ``sampling`` ("clip": ``clip_indices``; "segment": ``segment_indices``,
    which ignores the frame rate and the sampling rate)."""
    if sampling == "clip":
        return clip_indices(video_frames, video_fps, num_frames, sampling_rate, target_fps, clip_idx, num_clips, rng)
    if sampling == "segment":
        return segment_indices(video_frames, num_frames, clip_idx, num_clips, rng)
    raise ValueError(f"unknown temporal sampling {sampling!r}; choose from {TEMPORAL_SAMPLINGS}")
