"""Readers of the ground-truth masks that datasets and heatmap evaluation score against.

Video masks: ``masks/<stem>.npz`` with a ``(T, H, W)`` bool array under key ``masks`` (written by
``iared_video.synthetic.writers.save_masks``). Image masks: a PNG per image, object where > 127.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["load_masks", "load_image_mask"]


def load_masks(npz_path: str) -> np.ndarray:
    """Loads per-frame actor masks as a (T, H, W) bool array."""
    with np.load(npz_path, allow_pickle=False) as data:
        return data["masks"].astype(bool)


def load_image_mask(png_path: str) -> np.ndarray:
    """Loads a binary object-mask PNG as an (H, W) bool array."""
    with Image.open(png_path) as img:
        return np.asarray(img.convert("L")) > 127
