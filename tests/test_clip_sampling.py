"""The clip rule through pytorchvideo's samplers decodes the same frames as the hand-written rule it replaced."""

from __future__ import annotations

import random

import numpy as np
from pytorchvideo.data.clip_sampling import make_clip_sampler

from iared_video.datasets.video_sampling import clip_indices, clip_size_in_source_frames, clip_window


def _previous_window(video_frames: int, clip_size: float, clip_idx: int, num_clips: int,
                     rng: random.Random | None) -> tuple[float, float]:
    """The window rule as it was written before pytorchvideo drew the random start (the reference)."""
    delta = max(video_frames - clip_size, 0.0)
    if clip_idx == -1:
        start = (rng or random).uniform(0.0, delta)
    elif num_clips == 1:
        start = delta / 2.0
    else:
        start = delta * clip_idx / (num_clips - 1)
    return start, start + clip_size - 1.0


def _previous_indices(n: int, fps: float, t: int, rate: int, clip_idx: int, num_clips: int,
                      rng: random.Random | None) -> np.ndarray:
    start, end = _previous_window(n, clip_size_in_source_frames(t, rate, fps, 30), clip_idx, num_clips, rng)
    return np.clip(np.linspace(start, end, t), 0, n - 1).astype(np.int64)


def _settings(count: int) -> list[tuple[int, float, int, int]]:
    draw = np.random.default_rng(0)
    return [(int(draw.integers(1, 400)), float(draw.choice([12.0, 15.0, 24.0, 25.0, 29.97, 30.0, 60.0])),
             int(draw.integers(1, 17)), int(draw.integers(1, 9))) for _ in range(count)]


def test_random_training_clips_equal_the_previous_rule_for_fixed_seeds() -> None:
    for seed, (n, fps, t, rate) in enumerate(_settings(300)):
        ours, reference = random.Random(seed), random.Random(seed)
        for _ in range(3):  # the rng advances as before, so a sequence of clips matches too
            np.testing.assert_array_equal(clip_indices(n, fps, t, rate, 30, -1, 1, ours),
                                          _previous_indices(n, fps, t, rate, -1, 1, reference))
        assert ours.random() == reference.random()


def test_random_clips_from_the_random_module_and_its_state_kept() -> None:
    for seed, (n, fps, t, rate) in enumerate(_settings(50)):
        random.seed(seed)
        ours = clip_indices(n, fps, t, rate, 30, -1, 1)
        after = random.random()
        random.seed(seed)
        np.testing.assert_array_equal(ours, _previous_indices(n, fps, t, rate, -1, 1, None))
        assert random.random() == after
    rng, state = random.Random(1), random.getstate()
    clip_window(100, 40, -1, 1, rng)
    assert random.getstate() == state  # drawing from a given rng leaves the random module alone


def test_test_views_unchanged_and_how_pytorchvideos_constant_clips_differ() -> None:
    for n, fps, t, rate in _settings(100):
        for views in (1, 2, 3, 5):
            for k in range(views):
                np.testing.assert_array_equal(clip_indices(n, fps, t, rate, 30, k, views),
                                              _previous_indices(n, fps, t, rate, k, views, None))
    # 100 frames, a 40-frame window (delta 60), 3 views: pytorchvideo starts at k * 60 / 3, ours at k * 60 / 2.
    sampler = make_clip_sampler("constant_clips_per_video", 40, 3)
    assert [float(sampler(0, 100, {}).clip_start_sec) for _ in range(3)] == [0.0, 20.0, 40.0]
    assert [clip_window(100, 40, k, 3)[0] for k in range(3)] == [0.0, 30.0, 60.0]
    assert float(make_clip_sampler("constant_clips_per_video", 40, 1)(0, 100, {}).clip_start_sec) == 0.0
    assert clip_window(100, 40, 0, 1)[0] == 30.0  # one view: centred
