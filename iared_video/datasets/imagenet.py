"""ImageNet-style image dataset: ``PATH_TO_DATA_DIR/{train,val}/<class name>/<image>``."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image

from iared_video.datasets.bad_data import DataSplitError, RobustDataset, SampleError, check_file
from iared_video.datasets.build import DATASET_REGISTRY
from iared_video.datasets.transforms import image_transform

logger = logging.getLogger(__name__)

__all__ = ["ImageNet", "IMG_EXTENSIONS", "find_classes", "scan_image_folder", "load_rgb_image"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_classes(root: str) -> list[str]:
    """Sorted names of the class folders under ``root`` (label = position in this list)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DataSplitError(f"{root} holds no class folders")
    return classes


def scan_image_folder(root: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """Image paths (sorted, recursive per class folder) and their labels."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        if not os.path.isdir(class_dir):
            continue
        for folder, _, files in sorted(os.walk(class_dir, followlinks=True)):
            for file in sorted(files):
                if file.lower().endswith(IMG_EXTENSIONS):
                    paths.append(os.path.join(folder, file))
                    labels.append(label)
    if not paths:
        raise DataSplitError(f"{root} holds no images with extensions {IMG_EXTENSIONS}")
    return paths, labels


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: grayscale replicated, alpha dropped, 16-bit scaled to 8-bit."""
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb_image(path: str) -> Image.Image:
    """Open and fully decode an image as RGB; raise SampleError if it cannot be read."""
    check_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SampleError(path, f"{type(exc).__name__}: {str(exc)[:200]}") from exc


@DATASET_REGISTRY.register()
class ImageNet(RobustDataset):
    """Images from class folders; labels are indices into the sorted class folder names of ``train/``.

    The test split reads ``{TEST.SPLIT}/`` and falls back to ``val/`` when that folder does
    not exist. Samples are dicts with the same keys as ``Kinetics`` (``inputs`` is
    ``(C, H, W)``, ``video_index == index`` unless substituted, ``temporal_index`` and
    ``spatial_index`` 0) and the same bad-data rules: train/val substitute, test returns
    ``valid=False`` with zeros.
    """

    def __init__(self, cfg, split: str) -> None:
        self.mode, data = split, cfg.DATA
        self.root = self._split_root(data.PATH_TO_DATA_DIR, cfg.TEST.SPLIT if split == "test" else split)
        train_root = os.path.join(data.PATH_TO_DATA_DIR, "train")
        self.classes = find_classes(train_root if os.path.isdir(train_root) else self.root)
        extra = set(find_classes(self.root)) - set(self.classes)
        if extra:
            raise DataSplitError(f"{self.root} has class folders missing from {train_root}: {sorted(extra)[:5]}")
        if len(self.classes) > cfg.MODEL.NUM_CLASSES:
            raise DataSplitError(f"{len(self.classes)} class folders but MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES}")
        self.paths, self.labels = scan_image_folder(self.root, self.classes)
        self.crop_size = data.TRAIN_CROP_SIZE if split == "train" else data.TEST_CROP_SIZE
        self.transform = image_transform(
            split == "train", self.crop_size, data.MEAN, data.STD, auto_augment=data.IMAGE_AUTO_AUGMENT,
            color_jitter=data.IMAGE_COLOR_JITTER, re_prob=data.IMAGE_RE_PROB, crop_pct=data.IMAGE_CROP_PCT,
            interpolation=data.IMAGE_INTERPOLATION, scale=data.IMAGE_SCALE, hflip=data.RANDOM_FLIP,
        )
        self.num_retries, self.max_substitutions, self.seed = data.NUM_RETRIES, data.MAX_SUBSTITUTIONS, cfg.RNG_SEED
        self._init_failures()
        logger.info("ImageNet %s: %d images in %d classes from %s", split, len(self), len(self.classes), self.root)

    @staticmethod
    def _split_root(data_dir: str, name: str) -> str:
        root = os.path.join(data_dir, name)
        if not os.path.isdir(root) and name == "test":
            logger.info("%s does not exist; testing on %s/val", root, data_dir)
            root = os.path.join(data_dir, "val")
        return root

    def __len__(self) -> int:
        return len(self.paths)

    def _view(self, index: int) -> tuple[int, int, int]:
        return index, 0, 0

    def _load(self, item: int, temporal_index: int, spatial_index: int) -> torch.Tensor:
        return self.transform(load_rgb_image(self.paths[item]))

    def _blank(self) -> torch.Tensor:
        return torch.zeros(3, self.crop_size, self.crop_size)
