"""Temporal sampling of clips (PySlowFast / TimeSformer rule), as pure functions.

A clip is ``num_frames`` frames taken ``sampling_rate`` frames apart at
``target_fps``. In the video's own frame rate the clip therefore spans
``num_frames * sampling_rate * video_fps / target_fps`` source frames. The
window is placed at a random start (training), in the centre (one clip), or at
``num_clips`` evenly spaced positions (multi-view testing); the frame indices
are a linspace over the window, clamped to ``[0, video_frames - 1]`` so that a
video shorter than the window repeats its frames instead of failing.
"""

from __future__ import annotations

import math
import random

import numpy as np

__all__ = ["clip_size_in_source_frames", "clip_window", "linspace_indices", "clip_indices"]


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
        start = (rng or random).uniform(0.0, delta)
    elif not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx {clip_idx} out of range for {num_clips} clips")
    elif num_clips == 1:
        start = delta / 2.0
    else:
        start = delta * clip_idx / (num_clips - 1)
    return start, start + clip_size - 1.0


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
