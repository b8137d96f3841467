"""Bad-data handling shared by the video and image datasets: retry, substitute or flag.

A sample that cannot be read (missing, empty, truncated or non-media file...)
is retried up to ``num_retries`` times (once when the failure is permanent).
Then, in train and val mode, another item is substituted (chosen by a
generator seeded with ``(seed, index, attempt)``, so the choice is the same on
every run with the same seed); in test mode the sample comes back as zeros
with ``valid=False`` so the test meter can leave it out. Every failure is
logged at warning level with path and reason, appended to
``dataset.failures`` and reported in the sample itself (``substituted``,
``num_failures``, ``valid``), because counters in DataLoader worker processes
never reach the parent. For the same reason each sample also says how many of its
decodes needed the fallback decoder (``decoder_fallbacks``; subclasses add to
``self._decoder_fallbacks`` while loading).
"""

from __future__ import annotations

import abc
import logging
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from iared_video.utils.cli import UserError

logger = logging.getLogger(__name__)

__all__ = ["SampleError", "DataSplitError", "RobustDataset", "check_file", "substitute_index"]

MODES = ("train", "val", "test")


class SampleError(UserError, RuntimeError):
    """A sample that cannot be loaded.

    Attributes:
        path: the file.
        reason: one line saying why.
        permanent: True when retrying cannot help (missing or empty file).
    """

    def __init__(self, path: str, reason: str, permanent: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.permanent = path, reason, permanent


class DataSplitError(UserError, ValueError):
    """A data split (split CSV or image folder) that cannot be used: empty, unparsable or mislabelled."""


def check_file(path: str, error_cls: type[SampleError] = SampleError) -> None:
    """Raise a permanent ``error_cls`` for a missing, non-regular or zero-byte file."""
    if not os.path.exists(path):
        raise error_cls(path, "file not found", permanent=True)
    if not os.path.isfile(path):
        raise error_cls(path, "not a regular file", permanent=True)
    if os.path.getsize(path) == 0:
        raise error_cls(path, "empty file (0 bytes)", permanent=True)


def substitute_index(seed: int, index: int, attempt: int, num_items: int, exclude: int) -> int:
    """Deterministic substitute for item ``exclude`` (requested as dataset ``index``), never itself."""
    if num_items < 2:
        return exclude
    rng = np.random.default_rng([seed, index, attempt])
    pick = int(rng.integers(num_items - 1))
    return pick + 1 if pick >= exclude else pick


class RobustDataset(Dataset, abc.ABC):
    """Base class: subclasses say how to load one view of one item; this class handles failures.

    Subclasses set ``mode``, ``num_retries``, ``max_substitutions``, ``seed``, the item
    lists ``paths`` and ``labels``, and call ``_init_failures()``, then implement
    ``__len__``, ``_view``, ``_load`` and ``_blank``.
    """

    paths: list[str]
    labels: list[int]
    mode: str
    num_retries: int
    max_substitutions: int
    seed: int

    def _init_failures(self) -> None:
        self.failures: list[tuple[str, str]] = []  # (path, reason), in this process
        self._known_bad: dict[int, str] = {}  # item -> reason, skips re-decoding known failures
        self._decoder_fallbacks = 0  # decodes of the sample being loaded that used the fallback decoder

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _view(self, index: int) -> tuple[int, int, int]:
        """Dataset index -> (item, temporal_index, spatial_index)."""

    def _num_items(self) -> int:
        return len(self.paths)

    def _item_path(self, item: int) -> str:
        return self.paths[item]

    def _item_label(self, item: int) -> int:
        return self.labels[item]

    @abc.abstractmethod
    def _load(self, item: int, temporal_index: int, spatial_index: int) -> torch.Tensor:
        """Load and transform one view; raise SampleError when it cannot be read."""

    @abc.abstractmethod
    def _blank(self) -> torch.Tensor:
        """Zeros of the output shape, for invalid test samples."""

    # -- failure handling ---------------------------------------------------------------------
    def _try_load(self, item: int, temporal_index: int, spatial_index: int) -> tuple[torch.Tensor | None, str]:
        """Load with retries; returns (inputs, "") or (None, reason)."""
        if item in self._known_bad:
            return None, f"{self._known_bad[item]} (known bad)"
        reason = "unknown"
        for _ in range(max(1, self.num_retries)):
            try:
                return self._load(item, temporal_index, spatial_index), ""
            except SampleError as exc:
                reason = exc.reason
                if exc.permanent:
                    break
        self._known_bad[item] = reason
        return None, reason

    def _sample(self, index: int, view: tuple[int, int, int], inputs: torch.Tensor, **flags: Any) -> dict[str, Any]:
        item, temporal_index, spatial_index = view
        return {
            "inputs": inputs,
            "label": self._item_label(item),
            "index": index,
            "video_index": item,
            "temporal_index": temporal_index,
            "spatial_index": spatial_index,
            "path": self._item_path(item),
            "decoder_fallbacks": getattr(self, "_decoder_fallbacks", 0),
            **flags,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = self._view(index)
        item, temporal_index, spatial_index = view
        self._decoder_fallbacks = 0
        for attempt in range(self.max_substitutions + 1):
            inputs, reason = self._try_load(item, temporal_index, spatial_index)
            if inputs is not None:
                flags = dict(valid=True, substituted=attempt > 0, num_failures=attempt)
                return self._sample(index, (item, temporal_index, spatial_index), inputs, **flags)
            path = self._item_path(item)
            self.failures.append((path, reason))
            if self.mode == "test":
                logger.warning("unreadable %s (%s); test sample %d returned with valid=False", path, reason, index)
                return self._sample(index, view, self._blank(), valid=False, substituted=False, num_failures=1)
            item = substitute_index(self.seed, index, attempt, self._num_items(), item)
            logger.warning("unreadable %s (%s); %s sample %d substituted by %s", path, reason, self.mode, index,
                           self._item_path(item))
        raise RuntimeError(
            f"{self.max_substitutions + 1} items in a row could not be read for {self.mode} sample {index}; "
            f"the data set looks broken (last failures: {self.failures[-3:]})"
        )
