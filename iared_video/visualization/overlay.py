"""Frame overlays: heatmaps in colour, dropped patches greyed out, panels tiled into grids.

All images are uint8 ``(H, W, 3)`` RGB arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from matplotlib import colormaps
from PIL import Image, ImageDraw
from torch import Tensor

__all__ = ["GREY", "to_uint8_frames", "colorize", "overlay_heatmap", "grey_dropped", "write_label", "tile"]

GREY = 128  # value of every channel of a dropped patch in the kept-patch panels


def to_uint8_frames(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo normalisation of one model input ``(C, T, H, W)`` or ``(C, H, W)`` -> uint8 ``(T, H, W, 3)``."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    pixels = (x.detach().float().cpu() * s + m).clamp(0, 1) * 255
    return rearrange(pixels.round().to(torch.uint8), "c t h w -> t h w c").numpy()


def colorize(heat: np.ndarray, cmap: str = "jet", vmax: float = 1.0) -> np.ndarray:
    """``(H, W)`` values in ``[0, vmax]`` -> uint8 RGB through a matplotlib colormap."""
    rgba = colormaps[cmap](np.clip(heat / max(vmax, 1e-12), 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def overlay_heatmap(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heatmap (values in [0, 1]) over a frame."""
    colour = colorize(heat, cmap).astype(np.float32)
    return (frame.astype(np.float32) * (1 - alpha) + colour * alpha).round().astype(np.uint8)


def grey_dropped(frame: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Paint the pixels of dropped patches (``keep == False``, ``(H, W)``) flat grey (``GREY``)."""
    out = frame.copy()
    out[~keep.astype(bool)] = GREY
    return out


def write_label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` (white on black) in the top-left corner."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    left, top, right, bottom = draw.textbbox((1, 1), text)
    draw.rectangle((0, 0, right + 1, bottom + 1), fill=(0, 0, 0))
    draw.text((1, 1), text, fill=(255, 255, 255))
    return np.asarray(pil)


def tile(rows: Sequence[Sequence[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile equally sized panels (a list of rows) into one image with ``pad`` pixels between them."""
    height, width = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + pad) - pad, cols * (width + pad) - pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            top, left = i * (height + pad), j * (width + pad)
            canvas[top:top + height, left:left + width] = panel
    return canvas
