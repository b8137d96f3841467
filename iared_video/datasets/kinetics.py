"""Kinetics-style video dataset: ``{train,val,test}.csv`` files of ``path label`` lines."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from iared_video.datasets.bad_data import DataSplitError, RobustDataset
from iared_video.datasets.build import DATASET_REGISTRY
from iared_video.datasets.transforms import apply_video_transform, video_train_transform
from iared_video.datasets.views import decode_view, video_view_transform, view_spec

logger = logging.getLogger(__name__)

__all__ = ["Kinetics", "load_class_names", "read_split_csv", "resolve_path"]


def load_class_names(path: str) -> dict[str, int]:
    """Read ``{name: id}`` from a json file, or one name per line (id = line number) from text."""
    with g_pathmgr.open(path, "r") as f:
        text = f.read()
    if path.endswith(".json"):
        return {str(name): int(idx) for name, idx in json.loads(text).items()}
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return {name: idx for idx, name in enumerate(names)}


def resolve_path(path: str, prefix: str, data_dir: str) -> str:
    """Join ``prefix`` to a CSV path; without a prefix, relative paths resolve against ``data_dir``."""
    if prefix:
        return os.path.join(prefix, path)
    return path if os.path.isabs(path) else os.path.join(data_dir, path)


def _parse_label(text: str, class_to_id: dict[str, int] | None) -> int:
    try:
        return int(text)
    except ValueError:
        if class_to_id and text in class_to_id:
            return class_to_id[text]
        raise


def read_split_csv(
    csv_path: str, separator: str, prefix: str, data_dir: str, class_to_id: dict[str, int] | None = None
) -> tuple[list[str], list[int]]:
    """Paths and integer labels from a split file; blank lines and ``#`` comments are skipped.

    A label is an integer, or a class name found in ``class_to_id``. The path is everything
    before the last separator, so paths may contain spaces when the separator is a space.

    Raises:
        DataSplitError: a malformed line (file and line number in the message) or an empty split.
    """
    paths, labels = [], []
    with g_pathmgr.open(csv_path, "r") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(separator, 1)
            try:
                if len(parts) != 2 or not parts[0].strip():
                    raise ValueError("expected 'path<sep>label'")
                labels.append(_parse_label(parts[1].strip(), class_to_id))
            except ValueError as exc:
                raise DataSplitError(f"{csv_path}:{number}: cannot parse {line!r} "
                                     f"with separator {separator!r}") from exc
            paths.append(resolve_path(parts[0].strip(), prefix, data_dir))
    if not paths:
        raise DataSplitError(f"{csv_path} lists no videos")
    return paths, labels


def _class_names(cfg) -> dict[str, int] | None:
    name = cfg.DATA.CLASS_NAMES_FILE
    if not name:
        return None
    path = resolve_path(name, "", cfg.DATA.PATH_TO_DATA_DIR)
    return load_class_names(path) if g_pathmgr.exists(path) else None


@DATASET_REGISTRY.register()
class Kinetics(RobustDataset):
    """Video clips from ``PATH_TO_DATA_DIR/{train,val}.csv`` (test: ``{TEST.SPLIT}.csv``).

    Sampling: train takes one clip at a random start with random short-side jitter, crop
    and flip; val takes the centred clip and the centre crop; test takes every one of
    ``TEST.NUM_ENSEMBLE_VIEWS`` evenly spaced clips x ``TEST.NUM_SPATIAL_CROPS`` crops, so
    ``len == num_videos * views * crops`` and each view is one dataset index
    (``index = (video * views + temporal) * crops + spatial``).

    Each sample is a dict that ``default_collate`` batches:

    * ``inputs``: float ``(C, T, H, W)``, normalised with ``DATA.MEAN``/``DATA.STD``.
    * ``label`` (int), ``index`` (the requested dataset index), ``video_index`` (the
      video actually returned), ``temporal_index`` / ``spatial_index`` (test: view
      position in the grid; val: 0, 0; train: -1, -1 for random), ``path`` (str).
    * ``valid`` (bool), ``substituted`` (bool), ``num_failures`` (int): bad-data report;
      ``decoder_fallbacks`` (int): decodes of this sample done by the other backend than
      ``DATA.DECODING_BACKEND`` (see ``decoder``).
      Train/val never return an invalid sample: an unreadable video is retried
      ``DATA.NUM_RETRIES`` times then replaced by another one (``substituted=True``,
      ``video_index``/``label``/``path`` are the substitute's). Test never substitutes:
      an unreadable view comes back as zeros with ``valid=False``; leave it out of the
      metrics and report it. Failures are also logged (warning) and appended to
      ``self.failures`` (per process: worker copies do not reach the parent).
    """

    def __init__(self, cfg, split: str) -> None:
        self.mode, data = split, cfg.DATA
        self.data_dir = data.PATH_TO_DATA_DIR
        csv_name = cfg.TEST.SPLIT if split == "test" else split
        self.csv_path = os.path.join(self.data_dir, f"{csv_name}.csv")
        self.class_to_id = _class_names(cfg)
        self.paths, self.labels = read_split_csv(
            self.csv_path, data.PATH_LABEL_SEPARATOR, data.PATH_PREFIX, self.data_dir, self.class_to_id
        )
        self._check_labels(cfg.MODEL.NUM_CLASSES)
        test = split == "test"
        self.num_temporal_views = cfg.TEST.NUM_ENSEMBLE_VIEWS if test else 1
        self.num_spatial_crops = cfg.TEST.NUM_SPATIAL_CROPS if test else 1
        self.num_frames, self.sampling_rate, self.target_fps = data.NUM_FRAMES, data.SAMPLING_RATE, data.TARGET_FPS
        self.backend, self.fallback, self.threads = data.DECODING_BACKEND, data.DECODING_FALLBACK, data.DECODING_THREADS
        self.num_retries, self.max_substitutions, self.seed = data.NUM_RETRIES, data.MAX_SUBSTITUTIONS, cfg.RNG_SEED
        self.crop_size = data.TRAIN_CROP_SIZE if split == "train" else data.TEST_CROP_SIZE
        self.view = view_spec(cfg)  # decoding (every split) and the val/test transforms
        self._transforms = self._build_transforms(data)
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None  # last decoded test clip
        self._init_failures()
        logger.info("%s %s: %d videos, %d samples from %s", type(self).__name__, split, len(self.paths), len(self),
                    self.csv_path)

    def _check_labels(self, num_classes: int) -> None:
        bad = [(p, label) for p, label in zip(self.paths, self.labels) if not 0 <= label < num_classes]
        if bad:
            raise DataSplitError(f"{self.csv_path}: {len(bad)} labels outside [0, {num_classes}) "
                             f"(MODEL.NUM_CLASSES), e.g. {bad[:3]}")

    def _build_transforms(self, data) -> dict[int, Any]:
        if self.mode == "train":
            return {-1: video_train_transform(data.TRAIN_JITTER_SCALES, data.TRAIN_CROP_SIZE, data.RANDOM_FLIP,
                                              data.MEAN, data.STD)}
        positions = [1] if self.num_spatial_crops == 1 else list(range(self.num_spatial_crops))
        return {i: video_view_transform(self.view, pos) for i, pos in enumerate(positions)}

    @property
    def num_videos(self) -> int:
        """Number of videos in the split."""
        return len(self.paths)

    def __len__(self) -> int:
        return len(self.paths) * self.num_temporal_views * self.num_spatial_crops

    def _view(self, index: int) -> tuple[int, int, int]:
        if self.mode == "train":
            return index, -1, -1
        views = self.num_temporal_views * self.num_spatial_crops
        video, rest = divmod(index, views)
        return video, *divmod(rest, self.num_spatial_crops)

    def _decode(self, item: int, temporal_index: int) -> np.ndarray:
        key = (item, temporal_index)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        clip = decode_view(self.paths[item], self.view, temporal_index, self.num_temporal_views)
        self._decoder_fallbacks += int(clip.backend != self.backend)
        frames = clip.frames
        if self.mode == "test":  # the spatial crops of one temporal view share the decoded clip
            self._cache = (key, frames)
        return frames

    def _load(self, item: int, temporal_index: int, spatial_index: int) -> torch.Tensor:
        frames = self._decode(item, temporal_index)
        return apply_video_transform(frames, self._transforms[spatial_index])

    def _blank(self) -> torch.Tensor:
        return torch.zeros(3, self.num_frames, self.crop_size, self.crop_size)
