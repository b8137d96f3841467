"""The image data set: textured objects (shape x fill pattern) on clutter, in the ImageNet folder layout."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from PIL import Image

from iared_video.synthetic.backgrounds import make_background
from iared_video.synthetic.knobs import (
    DEFAULT_IMAGE_CLASSES,
    DEFAULT_NUM_IMAGES,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    IMAGE_CLASSES,
    IMAGE_PATTERNS,
    SPLITS,
    ImageKnobs,
    make_knobs,
)
from iared_video.synthetic.parallel import run_jobs
from iared_video.synthetic.scenes import add_noise, sample_noise
from iared_video.synthetic.shapes import SHAPES, local_coords
from iared_video.synthetic.splits import balanced_labels, check_counts, stratified_splits
from iared_video.synthetic.sprites import Sprite
from iared_video.synthetic.streams import contrast_color, image_rng, random_color, sample_size, uniform
from iared_video.synthetic.writers import write_json

__all__ = ["render_image", "generate_image_dataset"]


def _paint_object(image: np.ndarray, rng: np.random.Generator, class_name: str,
                  knobs: ImageKnobs) -> np.ndarray:
    """Paints the class object (shape x fill pattern) in place; returns its mask."""
    shape, pattern = class_name.rsplit("_", 1)
    h, w = image.shape[:2]
    radius = max(uniform(rng, knobs.object_size) * min(h, w) / 2, 4.0)
    center = (rng.uniform(radius, w - radius), rng.uniform(radius, h - radius))
    color = random_color(rng, (0.6, 1.0), (0.6, 1.0))
    mark_color, period = contrast_color(color), max(radius * 0.45, 3.0)
    coords = local_coords(*center, radius + 1, rng.uniform(0, 2 * math.pi), h, w)
    assert coords is not None  # the centre lies at least ``radius`` inside the image
    region, lx, ly = coords
    body = SHAPES[shape](lx, ly, radius)
    patch = image[region]
    patch[body] = color.astype(np.uint8)
    patch[body & _fill_marks(pattern, lx / period, ly / period)] = mark_color.astype(np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[region] = body
    return mask


def _fill_marks(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the fill ``pattern`` paints its contrast colour, at object coordinates in units of its period.

    Area fractions of the marks: solid 0, striped 1/2, dotted pi * 0.3^2 (about 0.28), checkered 1/2,
    gridded 1 - 0.72^2 (about 0.48).
    """
    cu, cv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5  # offset from the centre of the period cell
    if pattern == "solid":
        return np.zeros(np.broadcast(u, v).shape, dtype=bool)
    if pattern == "striped":
        return np.broadcast_to(np.floor(u).astype(np.int64) % 2 == 0, np.broadcast(u, v).shape)
    if pattern == "dotted":
        return cu * cu + cv * cv <= 0.3 ** 2
    if pattern == "checkered":
        return (np.floor(u).astype(np.int64) + np.floor(v).astype(np.int64)) % 2 == 0
    if pattern == "gridded":
        return (np.abs(cu) >= 0.36) | (np.abs(cv) >= 0.36)
    raise ValueError(f"unknown fill pattern {pattern!r}; expected one of {IMAGE_PATTERNS}")


def _render_image(rng: np.random.Generator, label: int, knobs: ImageKnobs,
                  height: int | None, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Renders one image from validated knobs; see :func:`render_image`."""
    h, w = sample_size(rng, knobs)
    h, w = height or h, width or w
    image = make_background(rng, h, w, knobs.clutter)
    n = int(rng.integers(knobs.num_distractors[0], knobs.num_distractors[1] + 1))
    for _ in range(n):
        Sprite("ellipse", uniform(rng, knobs.distractor_size) * min(h, w) / 2,
                random_color(rng, (0.2, 0.9), (0.3, 1.0)), uniform(rng, (0.4, 0.8)),
                (rng.uniform(0, w), rng.uniform(0, h)), (0.0, 0.0),
                rng.uniform(0, 2 * math.pi)).paint(image, 0.0)
    mask = _paint_object(image, rng, IMAGE_CLASSES[label], knobs)
    pool, offsets = sample_noise(rng, h, w, 1, knobs.noise)
    return add_noise(image, pool, offsets[0]), mask


def render_image(rng: np.random.Generator, label: int, *, height: int | None = None,
                 width: int | None = None, difficulty: str = "medium",
                 **knobs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Renders one image of class ``label`` (see :data:`IMAGE_CLASSES`).

    Args:
        rng: Source of randomness (e.g. :func:`image_rng`).
        label: Class id, an index into :data:`IMAGE_CLASSES`.
        height: Image height; drawn from the knobs if None.
        width: Image width; drawn from the knobs if None.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        **knobs: :class:`ImageKnobs` overrides.

    Returns:
        ``(image, mask)``: uint8 (H, W, 3) RGB and bool (H, W) object mask.
    """
    if not 0 <= label < len(IMAGE_CLASSES):
        raise ValueError(f"label must be in [0, {len(IMAGE_CLASSES)}), got {label}")
    return _render_image(rng, label, make_knobs(ImageKnobs, difficulty, **knobs), height, width)


def _make_image_item(job: tuple[str, int, int, int, str, ImageKnobs]) -> dict:
    """Renders and writes one image and its mask PNG; returns its info."""
    out_dir, seed, index, label, split, knobs = job
    image, mask = _render_image(image_rng(seed, index), label, knobs, None, None)
    name = IMAGE_CLASSES[label]
    rel_image = f"{split}/{name}/{index:06d}.png"
    rel_mask = f"masks/{split}/{name}/{index:06d}.png"
    for rel, arr in ((rel_image, image), (rel_mask, mask.astype(np.uint8) * 255)):
        os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
        Image.fromarray(arr).save(os.path.join(out_dir, rel))
    return {"index": index, "path": rel_image, "mask": rel_mask, "label": label, "class": name,
            "split": split, "width": image.shape[1], "height": image.shape[0]}


def generate_image_dataset(out_dir: str, num_images: int = DEFAULT_NUM_IMAGES, seed: int = 0,
                           num_classes: int = DEFAULT_IMAGE_CLASSES, *,
                           split_ratios: Sequence[float] = (0.8, 0.2),
                           difficulty: str = "medium", num_workers: int = 1,
                           progress: bool = False, **knobs: Any) -> dict:
    """Generates the synthetic image set in the ImageNet folder layout.

    Writes ``train/<class>/NNNNNN.png``, ``val/<class>/NNNNNN.png``, binary
    masks at ``masks/<split>/<class>/NNNNNN.png`` (0/255), ``classnames.json``
    and ``meta.json``. Every class directory exists in both splits.
    ``classnames.json`` holds the labels the folder loader uses (sorted folder
    names); ``meta.json``'s per-image ``label`` is the :data:`IMAGE_CLASSES`
    index that :func:`render_image` takes.

    Args:
        out_dir: Output directory (created if needed).
        num_images: Number of images (labels are class-balanced).
        seed: Non-negative seed; the same seed gives the same set.
        num_classes: Uses the first ``num_classes`` of :data:`IMAGE_CLASSES`.
        split_ratios: train/val proportions, applied per class.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        num_workers: Worker processes (<= 1: in-process). Output is identical.
        progress: Show a tqdm progress bar.
        **knobs: :class:`ImageKnobs` overrides.

    Returns:
        The meta dict that is also written to ``meta.json``.
    """
    check_counts(num_images, num_classes, len(IMAGE_CLASSES), seed, split_ratios, 2)
    iknobs = make_knobs(ImageKnobs, difficulty, **knobs)
    labels = balanced_labels(num_images, num_classes, seed)
    splits = stratified_splits(labels, split_ratios, seed)
    for split in SPLITS[:2]:
        for name in IMAGE_CLASSES[:num_classes]:
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    jobs = [(out_dir, seed, i, int(labels[i]), SPLITS[splits[i]], iknobs)
            for i in range(num_images)]
    items = list(run_jobs(_make_image_item, jobs, num_workers, progress, "images", chunksize=4))
    # Folder-layout loaders (ours, torchvision's ImageFolder) number the classes by sorted folder name.
    classnames = {name: i for i, name in enumerate(sorted(IMAGE_CLASSES[:num_classes]))}
    write_json(os.path.join(out_dir, "classnames.json"), classnames)
    meta = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION,
            "kind": "image", "seed": seed, "num_images": num_images, "num_classes": num_classes,
            "classes": IMAGE_CLASSES[:num_classes], "split_ratios": list(split_ratios),
            "difficulty": difficulty, "knobs": asdict(iknobs), "images": items}
    return write_json(os.path.join(out_dir, "meta.json"), meta)
