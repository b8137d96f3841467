"""Reader for ImageNet-Segmentation (Guillaumin et al. 2014) ``gtsegs_ijcv.mat``, 4,276 images with object masks.

Supported layout: a top-level MATLAB struct ``value`` with two fields,

* ``img``: N x 1 cell, each an ``H x W x 3`` uint8 image;
* ``gt``: N x 1 cell, each an ``H x W`` mask (0/1), possibly wrapped in a 1 x 1 cell.

The published file is MATLAB v7.3 (HDF5): then ``value/img`` and ``value/gt`` hold object
references, the arrays are stored column-major (read transposed) and a ``gt`` reference points
to a 1 x 1 cell of references. That path needs ``h5py``, which is **not** installed in the tested
environment; it is written against the documented layout but untested here. MATLAB v5 files
(``scipy.io.loadmat``) of the same struct layout are read with scipy and are tested.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["ImageNetSegmentation"]

logger = logging.getLogger(__name__)


def _unwrap(cell: Any) -> np.ndarray:
    """Strip 1-element object (cell) wrappers down to the numeric array."""
    while isinstance(cell, np.ndarray) and cell.dtype == object and cell.size == 1:
        cell = cell.flat[0]
    return np.asarray(cell)


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n" or (f.seek(512) == 512 and f.read(8) == b"\x89HDF\r\n\x1a\n")


class ImageNetSegmentation:
    """``(image uint8 (H, W, 3), mask bool (H, W))`` pairs from ``gtsegs_ijcv.mat`` (see module doc).

    Args:
        path: the ``.mat`` file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._h5: Any = None  # h5py.File once opened
        if _is_hdf5(path):
            self._open_hdf5()
        else:
            self._open_v5()

    def _open_v5(self) -> None:
        from scipy.io import loadmat

        value = loadmat(self.path, squeeze_me=False)["value"][0, 0]
        self._imgs, self._gts = value["img"].reshape(-1), value["gt"].reshape(-1)
        if len(self._imgs) != len(self._gts):
            raise ValueError(f"{self.path}: {len(self._imgs)} images but {len(self._gts)} masks")

    def _open_hdf5(self) -> None:
        try:
            import h5py
        except ImportError as exc:
            raise ImportError(f"{self.path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py "
                              "(pip install h5py)") from exc
        self._h5 = h5py.File(self.path, "r")
        self._imgs, self._gts = self._h5["value/img"][:, 0], self._h5["value/gt"][:, 0]

    def __len__(self) -> int:
        return len(self._imgs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._h5 is not None:
            image = np.asarray(self._h5[self._imgs[index]]).transpose(2, 1, 0)
            inner = self._h5[self._gts[index]]
            mask = np.asarray(self._h5[inner[0, 0]]).transpose(1, 0)
        else:
            image, mask = _unwrap(self._imgs[index]), _unwrap(self._gts[index])
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return image.astype(np.uint8), mask.astype(bool)
