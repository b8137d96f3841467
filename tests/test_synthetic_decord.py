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


def test_generated_set_decodes_with_decord_like_pyav(tmp_path) -> None:
    knobs = S.make_knobs(S.VideoKnobs, **SMALL)
    drawn = {sample_size(S.video_rng(SEED, i), knobs)[1] for i in range(NUM_VIDEOS)}
    assert drawn & DECORD_UNREADABLE_WIDTHS  # the set exercises the rule
    meta = S.generate_video_dataset(str(tmp_path), num_videos=NUM_VIDEOS, seed=SEED, num_classes=2, **SMALL)
    widths = [v["width"] for v in meta["videos"]]
    assert not set(widths) & DECORD_UNREADABLE_WIDTHS
    for v in meta["videos"]:
        path = str(tmp_path / v["path"])
        clip = decode_with_decord(path, ALL_FRAMES)  # raises DecodeError where PyAV would be the fallback
        assert clip.frames.shape == (v["frames"], v["height"], v["width"], 3)
        reference = decode_with_pyav(path, ALL_FRAMES).frames
        # Same H.264 stream, two YUV -> RGB conversions: at most a grey level apart on average.
        assert np.abs(clip.frames.astype(np.int16) - reference).mean() < 1.0  # 0 with decord 0.6, PyAV 18
