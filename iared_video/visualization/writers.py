"""Writers for visualisations: PNG, animated GIF (Pillow), MP4 (PyAV); JSON goes through ``utils.results.save_json``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import av
import numpy as np
from PIL import Image

from iared_video.config.choices import ANIMATION_FORMATS  # listed once, with the config keys

__all__ = ["ANIMATION_FORMATS", "save_png", "save_gif", "save_mp4", "save_animation"]


def _ensure_dir(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def save_png(image: np.ndarray, path: str) -> str:
    """Write a uint8 ``(H, W, 3)`` image as PNG; returns the path."""
    _ensure_dir(path)
    Image.fromarray(image).save(path, format="PNG")
    return path


def _shared_palette(frames: Sequence[np.ndarray]) -> list[Image.Image]:
    """The frames in one 256-colour palette chosen over all of them (keeps colour bars smooth and stable)."""
    strip = Image.fromarray(np.concatenate([np.asarray(f) for f in frames], axis=0))
    palette = strip.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    return [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]


def save_gif(frames: Sequence[np.ndarray], path: str, fps: float = 4.0) -> str:
    """Write uint8 frames (all the same size) as a looping animated GIF with one shared palette."""
    _ensure_dir(path)
    images = _shared_palette(frames)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=int(round(1000 / fps)))
    return path


def save_mp4(frames: Sequence[np.ndarray], path: str, fps: float = 4.0) -> str:
    """Write uint8 frames as H.264 MP4 (odd sizes padded to even ones, as yuv420p needs)."""
    _ensure_dir(path)
    height, width = frames[0].shape[:2]
    pad_h, pad_w = height % 2, width % 2
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=max(int(round(fps)), 1))
        stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, "yuv420p"
        for frame in frames:
            padded = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def save_animation(frames: Sequence[np.ndarray], stem: str, fmt: str = "gif", fps: float = 4.0) -> str | None:
    """Write ``stem.gif`` / ``stem.mp4`` (``fmt`` from ``ANIMATION_FORMATS``); None for ``"none"``."""
    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"animation format must be one of {ANIMATION_FORMATS}, got {fmt!r}")
    if fmt == "none":
        return None
    writer = save_gif if fmt == "gif" else save_mp4
    return writer(frames, f"{stem}.{fmt}", fps)

