"""Checking that videos decode: a few evenly spaced frames of each, with the loader's decoders.

Used by ``tools/check_dataset.py`` (a split CSV) and ``tools/prepare_kinetics.py`` (the clips an
annotation file names). A video counts as readable when some backend decodes it; ``Report.reason``
keeps why the first backend failed, so fallback-only videos can be listed too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from iared_video.datasets.bad_data import check_file
from iared_video.datasets.decoder import BACKENDS, DecodeError, decode_with_decord, decode_with_pyav

__all__ = ["DECODERS", "Report", "check_video", "run_checks"]

DECODERS = {"decord": decode_with_decord, "pyav": decode_with_pyav}


@dataclass
class Report:
    """What checking one video found."""

    path: str
    ok: bool  # some backend decoded it
    backend: str  # the backend that decoded it ("" if none)
    reason: str  # why the first backend (or every backend) failed; "" if the first one worked
    frames: int = 0
    fps: float = 0.0
    height: int = 0
    width: int = 0


def check_video(path: str, backend: str, num_frames: int, fallback: bool = True) -> Report:
    """Decode ``num_frames`` evenly spaced frames of ``path``, first with ``backend``."""
    try:
        check_file(path, DecodeError)
    except DecodeError as exc:
        return Report(path, False, "", exc.reason)
    spaced = lambda n, fps: np.linspace(0, n - 1, min(num_frames, n)).astype(np.int64)  # noqa: E731
    order = [backend] + ([b for b in BACKENDS if b != backend] if fallback else [])
    reasons = []
    for name in order:
        try:
            clip = DECODERS[name](path, spaced)
        except DecodeError as exc:
            reasons.append(exc.reason)
            continue
        _, height, width, _ = clip.frames.shape
        return Report(path, True, name, "; ".join(reasons), clip.video_frames, clip.fps, height, width)
    return Report(path, False, "", "; ".join(reasons))


def _check_star(args: tuple[str, str, int, bool]) -> Report:
    return check_video(*args)


def run_checks(paths: Sequence[str], backend: str, num_frames: int, workers: int, fallback: bool) -> Iterator[Report]:
    """Check every path, in order, with ``workers`` processes (0: in this process)."""
    jobs = [(path, backend, num_frames, fallback) for path in paths]
    if workers <= 0:
        yield from map(_check_star, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_check_star, jobs, chunksize=4)
