"""Writers with reproducible bytes: H.264 MP4 videos, ``.npz`` mask stacks and JSON.

The readers of these files are beside the datasets (``iared_video.datasets.masks``).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

__all__ = ["DECORD_UNREADABLE_WIDTHS", "decord_readable_width", "write_mp4", "save_masks", "write_json"]

#: Frame widths whose H.264 files decord 0.6 cannot read back (``get_batch`` fails with "Check failed:
#: from_size == to_size", dmlc/decord#336): every such width among the even widths 8..2048, found by
#: writing each with ``write_mp4``. The height does not matter.
DECORD_UNREADABLE_WIDTHS = frozenset({8, 12, 16, 24, 48, 72})


def decord_readable_width(width: int) -> int:
    """``width``, or the next even width when decord cannot read videos ``width`` pixels wide (72 -> 74)."""
    return width + 2 if width in DECORD_UNREADABLE_WIDTHS else width


def write_mp4(path: str, frames: np.ndarray, fps: int, crf: int = 23) -> None:
    """Writes RGB frames as an H.264 (libx264, yuv420p) MP4 with PyAV.

    B-frames are off and every frame gets pts = index at time base 1/fps, so
    decoders return exactly T frames. One encoder thread, fixed options and
    macroblock-tree rate control off make the output byte-identical across
    runs: with mb-tree on, this x264 build's output depended on heap contents
    (a few videos in 400 differed between runs).

    Args:
        path: Output ``.mp4`` path.
        frames: uint8 (T, H, W, 3) RGB frames with even H and W.
        fps: Integer frame rate.
        crf: x264 constant rate factor.
    """
    import av  # deferred: only the writer needs PyAV

    h, w = frames.shape[1:3]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.max_b_frames = 0
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1",
                          "x264-params": "mbtree=0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def save_masks(path: str, masks: np.ndarray) -> None:
    """Saves (T, H, W) bool masks as a compressed ``.npz`` with key ``masks``.

    Equivalent to ``np.savez_compressed(path, masks=masks)`` but with a fixed
    zip timestamp, so the file bytes are reproducible.
    """
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(masks, dtype=bool), allow_pickle=False)
    info = zipfile.ZipInfo("masks.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, buf.getvalue())


def write_json(path: str, obj: Any) -> Any:
    """Writes deterministic, human-readable JSON; returns ``obj`` as read back."""
    text = json.dumps(obj, indent=2) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return json.loads(text)
