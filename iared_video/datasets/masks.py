"""Readers of the ground-truth masks that datasets and heatmap evaluation score against.

Video masks: ``masks/<stem>.npz`` with a ``(T, H, W)`` bool array under key ``masks`` (written by
``iared_video.synthetic.writers.save_masks``). Image masks: a PNG per image, object where > 127.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["load_masks", "load_image_mask", "video_mask_path", "image_mask_path"]


def load_masks(npz_path: str) -> np.ndarray:
    """Loads per-frame actor masks as a (T, H, W) bool array."""
    with np.load(npz_path, allow_pickle=False) as data:
        return data["masks"].astype(bool)


def load_image_mask(png_path: str) -> np.ndarray:
    """Loads a binary object-mask PNG as an (H, W) bool array."""
    with Image.open(png_path) as img:
        return np.asarray(img.convert("L")) > 127


def video_mask_path(data_dir: str, video_path: str) -> str:
    """Where the masks of ``video_path`` are: ``<data_dir>/masks/<video stem>.npz``."""
    stem = os.path.splitext(os.path.basename(video_path))[0]
    return os.path.join(data_dir, "masks", f"{stem}.npz")


def image_mask_path(data_dir: str, split: str, image_path: str) -> str:
    """Where the mask of ``<data_dir>/<split>/<class>/<name>`` is: ``<data_dir>/masks/<split>/<class>/<stem>.png``."""
    rel = os.path.relpath(image_path, os.path.join(data_dir, split))
    return os.path.join(data_dir, "masks", split, os.path.splitext(rel)[0] + ".png")
