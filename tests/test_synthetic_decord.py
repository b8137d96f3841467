"""The generated videos decode with decord, the loader's primary backend, without a PyAV fallback."""

from __future__ import annotations

import numpy as np
import pytest

from iared_video import synthetic as S
from iared_video.datasets.decoder import DecodeError, decode_with_decord, decode_with_pyav
from iared_video.synthetic.streams import sample_size
from iared_video.synthetic.writers import DECORD_UNREADABLE_WIDTHS, decord_readable_width, write_mp4

pytest.importorskip("decord")

ALL_FRAMES = lambda n, fps: np.arange(n)  # noqa: E731
# Short sides 46-74 at seed 2: the first 12 videos draw widths 48 (twice) and 72 (checked below).
SMALL = dict(min_short_side=46, max_short_side=74, min_frames=8, max_frames=10)
SEED, NUM_VIDEOS = 2, 12


def test_unreadable_widths_are_unreadable_and_their_replacement_is_readable(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 80, 3), dtype=np.uint8)
    for width in sorted(DECORD_UNREADABLE_WIDTHS):
        bad, good = str(tmp_path / f"{width}.mp4"), str(tmp_path / f"{width}_fixed.mp4")
        write_mp4(bad, frames[:, :, :width], fps=10)
        write_mp4(good, frames[:, :, :decord_readable_width(width)], fps=10)
        with pytest.raises(DecodeError):
            decode_with_decord(bad, ALL_FRAMES)
        assert decode_with_decord(good, ALL_FRAMES).frames.shape == (2, 32, width + 2, 3)
    assert decord_readable_width(70) == 70


def test_only_1_2_0_keeps_the_unreadable_widths() -> None:
    """1.2.0 regenerates its old sets exactly, unreadable widths included; 1.2.1 and 2.0.0 draw them 2 px wider
    and every other draw the same."""
    knobs = S.make_knobs(S.VideoKnobs, **SMALL)
    for i in range(NUM_VIDEOS):
        old = S.sample_video_spec(S.video_rng(SEED, i), knobs, "1.2.0")
        assert old[:2] == sample_size(S.video_rng(SEED, i), knobs)
        for version in ("1.2.1", "2.0.0"):
            new = S.sample_video_spec(S.video_rng(SEED, i), knobs, version)
            assert new == (old[0], old[1] + 2 * (old[1] in DECORD_UNREADABLE_WIDTHS), *old[2:])


@pytest.mark.parametrize("version", ["1.2.1", "2.0.0"])
def test_generated_set_decodes_with_decord_like_pyav(tmp_path, version: str) -> None:
    knobs = S.make_knobs(S.VideoKnobs, **SMALL)
    drawn = {sample_size(S.video_rng(SEED, i), knobs)[1] for i in range(NUM_VIDEOS)}
    assert {48, 72} <= drawn  # the set exercises the rule
    meta = S.generate_video_dataset(str(tmp_path), num_videos=NUM_VIDEOS, seed=SEED, num_classes=2, version=version,
                                    **SMALL)
    assert meta["version"] == version
    widths = [v["width"] for v in meta["videos"]]
    assert not set(widths) & DECORD_UNREADABLE_WIDTHS and {50, 74} <= set(widths)
    for v in meta["videos"]:
        path = str(tmp_path / v["path"])
        clip = decode_with_decord(path, ALL_FRAMES)  # raises DecodeError where PyAV would be the fallback
        assert clip.frames.shape == (v["frames"], v["height"], v["width"], 3)
        reference = decode_with_pyav(path, ALL_FRAMES).frames
        # Same H.264 stream, two YUV -> RGB conversions: at most a grey level apart on average.
        assert np.abs(clip.frames.astype(np.int16) - reference).mean() < 1.0  # 0 with decord 0.6, PyAV 18
        rendered, _, _ = S.render_video(S.video_rng(SEED, v["index"]), v["label"], version=version, **SMALL)
        # x264 at crf 23 smooths 2.0.0's grain most (5-9 levels)
        error = np.abs(clip.frames.astype(np.int16) - rendered).mean()
        assert error < 10.0
        if version == "2.0.0":  # the camera moves every patch: each frame is closer to its own render than the next
            assert error < 0.5 * np.abs(clip.frames[1:].astype(np.int16) - rendered[:-1]).mean()
