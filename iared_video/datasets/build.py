"""Dataset registry and builder."""

from __future__ import annotations

from fvcore.common.registry import Registry
from torch.utils.data import Dataset

__all__ = ["DATASET_REGISTRY", "build_dataset", "split_mode"]

DATASET_REGISTRY = Registry("DATASET")
DATASET_REGISTRY.__doc__ = """
Registry of datasets. A registered class is built as ``cls(cfg, split)``; names are
matched case-insensitively (``DATA.DATASET = "kinetics"`` finds class ``Kinetics``).
"""

SPLITS = ("train", "val", "test")


def split_mode(split: str) -> str:
    """Validate a split name: "train", "val" or "test"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def build_dataset(name: str, cfg, split: str) -> Dataset:
    """Build dataset ``name`` (e.g. "kinetics", "imagenet") for ``split`` ("train", "val" or "test").

    Raises:
        KeyError: no dataset of that name is registered (the message lists the known ones).
    """
    by_name = {key.lower(): cls for key, cls in DATASET_REGISTRY}
    if name.lower() not in by_name:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(by_name)}")
    return by_name[name.lower()](cfg, split_mode(split))
