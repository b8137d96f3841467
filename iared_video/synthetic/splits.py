"""Labels and splits: class-balanced labels and per-class (stratified) split assignment."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from iared_video.synthetic.streams import LABEL_STREAM, SPLIT_STREAM

logger = logging.getLogger(__name__)

__all__ = ["balanced_labels", "stratified_splits", "check_counts"]


def balanced_labels(num_items: int, num_classes: int, seed: int) -> np.ndarray:
    """Class-balanced labels (counts differ by at most one), shuffled by seed."""
    base = np.arange(num_items) % num_classes
    return np.random.default_rng([seed, LABEL_STREAM]).permutation(base)


def stratified_splits(labels: np.ndarray, ratios: Sequence[float], seed: int) -> list[int]:
    """Assigns each item a split index, per class in proportion to ``ratios``.

    Returns:
        A list with one split index (into ``ratios``) per item.
    """
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    cum = np.cumsum(np.asarray(ratios, dtype=np.float64) / float(sum(ratios)))
    out = [0] * len(labels)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(cum * len(idx)).astype(int)
        for pos, item in enumerate(idx):
            out[int(item)] = int(np.searchsorted(bounds, pos, side="right"))
    counts = np.bincount(out, minlength=len(ratios))
    for i, (ratio, count) in enumerate(zip(ratios, counts)):
        if ratio > 0 and count == 0:
            logger.warning("split %d (ratio %.2f) gets no items: %d items over %d classes are too few for the "
                           "per-class rounding; generate more", i, ratio, len(labels), len(np.unique(labels)))
    return out


def check_counts(num_items: int, num_classes: int, max_classes: int, seed: int,
                  ratios: Sequence[float], num_splits: int) -> None:
    """Validates the item count, class count, seed and split ratios."""
    if len(ratios) != num_splits or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"need {num_splits} non-negative split ratios, got {list(ratios)}")
    if not 1 <= num_classes <= max_classes:
        raise ValueError(f"num_classes must be in [1, {max_classes}], got {num_classes}")
    if num_items < num_classes:
        raise ValueError(f"need at least one item per class ({num_items} < {num_classes})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
