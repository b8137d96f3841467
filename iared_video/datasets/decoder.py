"""Video decoding: decord first, PyAV as a configurable backend and per-file fallback.

Both backends decode a clip in two steps: read the frame count and frame rate,
ask an ``index_fn(video_frames, fps)`` which frames to take (see
``video_sampling.clip_indices``), then decode exactly those frames. Frames come
back as uint8 RGB ``(T, H, W, 3)`` whatever the source pixel format (grayscale,
alpha, 4:4:4, full-range JPEG...). Every failure is raised as ``DecodeError``
with a one-line reason; nothing is swallowed here.

Fallbacks are remembered: once decord failed on a file that PyAV then decoded
(decord cannot copy the frames of some sizes, e.g. 72 pixels wide), later reads
of that file go to PyAV first, silently (and the same the other way round). The fallback is logged at warning level
once per file per run: the note is kept in this process and in a run-wide folder
(``$IARED_DECODER_NOTES``, made by the first process that imports this module and
inherited by its DataLoader workers, which are re-created every epoch).
``DecodedClip.backend`` says which backend decoded a clip, so datasets can count
fallbacks per sample (``decoder_fallbacks`` in the trainer's json_stats).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from iared_video.config.choices import DECODING_BACKENDS
from iared_video.datasets.bad_data import SampleError, check_file

try:
    import decord
except ImportError:  # decord has no wheels for some platforms; PyAV still works
    decord = None

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "DecodeError", "DecodedClip", "IndexFn", "decode_clip", "decode_with_decord", "decode_with_pyav",
           "failed_before"]

BACKENDS = DECODING_BACKENDS  # listed once, with the config keys
# (video_frames, video_fps) -> int64 frame indices to decode.
IndexFn = Callable[[int, float], np.ndarray]
# (backend, file version) pairs where that backend failed and the other one decoded, in this process.
_FAILED: set[str] = set()
NOTES_ENV = "IARED_DECODER_NOTES"
_DECORD_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Error: )?")


class DecodeError(SampleError):
    """A video that cannot be decoded (``path``, one-line ``reason``, ``permanent``)."""


@dataclass
class DecodedClip:
    """Frames of one clip and what was known about the video when decoding it."""

    frames: np.ndarray  # uint8 (T, H, W, 3), RGB
    fps: float  # the video's average frame rate
    video_frames: int  # frames in the video
    indices: np.ndarray  # int64 (T,), the frames taken
    backend: str  # the backend that decoded it


def _short(exc: BaseException) -> str:
    """Last non-empty line of an exception message, without decord's ``[time] file.cc:line:`` prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = _DECORD_PREFIX.sub("", lines[-1] if lines else "")
    return f"{type(exc).__name__}: {text[:200]}"


def _checked_indices(path: str, index_fn: IndexFn, video_frames: int, fps: float) -> np.ndarray:
    if video_frames < 1:
        raise DecodeError(path, "the container reports no frames")
    indices = np.asarray(index_fn(video_frames, fps), dtype=np.int64)
    if indices.size == 0 or indices.min() < 0 or indices.max() >= video_frames:
        raise ValueError(f"index_fn gave indices outside [0, {video_frames - 1}]: {indices}")
    return indices


def decode_with_decord(path: str, index_fn: IndexFn, num_threads: int = 1) -> DecodedClip:
    """Decode the frames chosen by ``index_fn`` with ``decord.VideoReader.get_batch``."""
    if decord is None:
        raise DecodeError(path, "decord is not installed")
    errors = (decord.DECORDError, RuntimeError, OSError)
    try:
        reader = decord.VideoReader(path, num_threads=num_threads)
        video_frames, fps = len(reader), float(reader.get_avg_fps())
    except errors as exc:
        raise DecodeError(path, f"decord: {_short(exc)}") from exc
    indices = _checked_indices(path, index_fn, video_frames, fps)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except errors as exc:
        raise DecodeError(path, f"decord: {_short(exc)}") from exc
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] != len(indices):
        raise DecodeError(path, f"decord: unexpected frame array shape {frames.shape}")
    return DecodedClip(frames, fps, video_frames, indices, "decord")


# What PyAV raises on unreadable input (av.error.* derive from FFmpegError; some also from OSError/ValueError).
_PYAV_ERRORS = (av.FFmpegError, OSError, ValueError)


def _pyav_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else float("nan")


def _pyav_frame_count(path: str) -> tuple[int, float]:
    """Frame count and fps; counts packets (no decoding) when the container has no count."""
    with av.open(path) as container:
        if not container.streams.video:
            raise DecodeError(path, "pyav: no video stream")
        stream = container.streams.video[0]
        fps = _pyav_fps(stream)
        if stream.frames > 0:
            return stream.frames, fps
        return sum(1 for packet in container.demux(stream) if packet.size > 0), fps


def _pyav_decode(path: str, indices: np.ndarray, threads: int) -> tuple[list[np.ndarray], int]:
    """Decode frames in order up to the last wanted index; returns the wanted frames and frames seen."""
    wanted, last_wanted = set(indices.tolist()), int(indices.max())
    kept: dict[int, np.ndarray] = {}
    last_frame, seen = None, 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threads != 1:
            stream.thread_type, stream.codec_context.thread_count = "AUTO", threads
        for i, frame in enumerate(container.decode(stream)):
            seen, last_frame = i + 1, frame
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
            if i >= last_wanted:
                break
        if seen == 0:
            raise DecodeError(path, "pyav: no decodable frames")
        assert last_frame is not None  # seen > 0
        if seen <= last_wanted:  # container over-reported its length: clamp to the last real frame
            kept[seen - 1] = last_frame.to_ndarray(format="rgb24")
    return [kept[min(int(i), seen - 1)] for i in indices], seen


def decode_with_pyav(path: str, index_fn: IndexFn, num_threads: int = 1) -> DecodedClip:
    """Decode the frames chosen by ``index_fn`` with PyAV (sequential decode, early stop)."""
    try:
        video_frames, fps = _pyav_frame_count(path)
    except _PYAV_ERRORS as exc:
        raise DecodeError(path, f"pyav: {_short(exc)}") from exc
    indices = _checked_indices(path, index_fn, video_frames, fps)
    try:
        frames, seen = _pyav_decode(path, indices, num_threads)
    except _PYAV_ERRORS as exc:
        raise DecodeError(path, f"pyav: {_short(exc)}") from exc
    if seen <= int(indices.max()):
        logger.warning("%s: container reports %d frames, only %d decodable; clamped", path, video_frames, seen)
        video_frames, indices = seen, np.minimum(indices, seen - 1)
    return DecodedClip(np.stack(frames), fps, video_frames, indices, "pyav")


_DECODERS: dict[str, Callable[[str, IndexFn, int], DecodedClip]] = {
    "decord": decode_with_decord,
    "pyav": decode_with_pyav,
}


def _notes_dir() -> str:
    """This run's folder of fallback notes: inherited through ``$IARED_DECODER_NOTES`` or made here."""
    inherited = os.environ.get(NOTES_ENV, "")
    if inherited and os.path.isdir(inherited):
        return inherited
    made = tempfile.mkdtemp(prefix="iared_decoder_notes_")
    os.environ[NOTES_ENV] = made  # DataLoader workers (fork or spawn) and spawned ranks inherit it
    creator = os.getpid()

    def _remove() -> None:  # only the process that made the folder removes it
        if os.getpid() == creator:
            shutil.rmtree(made, ignore_errors=True)

    atexit.register(_remove)
    return made


_NOTES_DIR = _notes_dir()


def _note_key(path: str, backend: str) -> str:
    """A name for ``backend`` on this version of the file (path, size and modification time)."""
    stat = os.stat(path)
    text = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    return f"{backend}-{hashlib.sha1(text.encode()).hexdigest()}"


def failed_before(path: str, backend: str) -> bool:
    """True when ``backend`` failed on this file earlier in the run (this process or another one of the run)."""
    key = _note_key(path, backend)
    if key in _FAILED:
        return True
    if os.path.exists(os.path.join(_NOTES_DIR, key)):
        _FAILED.add(key)
        return True
    return False


def _note_failure(path: str, backend: str) -> bool:
    """Remember that ``backend`` failed on ``path``; True when no process of the run had noted it yet."""
    key = _note_key(path, backend)
    _FAILED.add(key)
    try:
        os.close(os.open(os.path.join(_NOTES_DIR, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    except OSError:  # the run's folder went away: fall back to this process's memory
        return True
    return True


def _report_fallback(path: str, failed: str, reasons: list[str], used: str) -> None:
    level = logging.WARNING if _note_failure(path, failed) else logging.DEBUG
    logger.log(level, "%s could not decode %s (%s); decoded with %s instead (later reads of this file go to %s "
               "first)", failed, path, "; ".join(reasons), used, used)


def _backend_order(path: str, backend: str, fallback: bool) -> list[str]:
    """Backends to try: ``backend`` then the other, or the other first for files ``backend`` failed on before."""
    if not fallback:
        return [backend]
    order = [backend] + [b for b in BACKENDS if b != backend]
    return order[::-1] if failed_before(path, backend) else order


def decode_clip(
    path: str, index_fn: IndexFn, backend: str = "decord", fallback: bool = True, num_threads: int = 1
) -> DecodedClip:
    """Decode one clip, falling back to the other backend when the first one fails.

    Args:
        path: local video file.
        index_fn: ``(video_frames, fps) -> indices`` choosing the frames to decode.
        backend: "decord" or "pyav", tried first.
        fallback: try the other backend when the first fails (logged at warning level once per file per run;
            files decord failed on go to PyAV first from then on, see the module docstring).
        num_threads: decoder threads (0: let the decoder choose).

    Raises:
        DecodeError: the file is missing/empty (permanent) or no backend could decode it.
    """
    if backend not in _DECODERS:
        raise ValueError(f"unknown decoding backend {backend!r}; choose from {BACKENDS}")
    check_file(path, DecodeError)
    order = _backend_order(path, backend, fallback)
    reasons: list[str] = []
    for name in order:
        try:
            clip = _DECODERS[name](path, index_fn, num_threads)
        except DecodeError as exc:
            reasons.append(exc.reason)
            continue
        if reasons:
            _report_fallback(path, order[0], reasons, name)
        return clip
    raise DecodeError(path, "; ".join(reasons))
