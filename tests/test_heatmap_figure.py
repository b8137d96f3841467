"""The labelled heatmap figure: labels read back from the Matplotlib artists, the weights in titles and on stdout."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from iared_video.methods import load_config
from iared_video.visualization import RANDOM_WEIGHTS, describe_weights, run_visualize
from iared_video.visualization.figure import (
    COLORBAR_AXES,
    COLORBAR_LABEL,
    FigureData,
    animation_frames,
    figure_to_array,
    heatmap_figure,
)

IMAGE_OPTS = ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "test_vit", "MODEL.NUM_CLASSES", "3", "DATA.TRAIN_CROP_SIZE",
              "32", "DATA.TEST_CROP_SIZE", "32", "METHOD.NAME", "iared", "IARED.NUM_GROUPS", "2",
              "DEVICE", "cpu", "VISUALIZE.ANIMATION", "none"]


def _data(num_frames: int, num_groups: int = 2, threshold: float | None = 0.5) -> FigureData:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (num_frames, 32, 32, 3), dtype=np.uint8)
    heat = rng.uniform(size=(num_groups, num_frames, 32, 32))
    keep = np.ones((num_groups, num_frames, 32, 32), bool)
    keep[:, :, :16] = False  # the top half is dropped by group 1
    keep[1:, :, 16:24] = False  # and the next quarter by group 2
    labels = [f"frame {4 * t}" for t in range(num_frames)] if num_frames > 1 else ["image"]
    return FigureData(frames, heat, keep, [0.5, 0.25][:num_groups], labels, "ride (p=0.41)", RANDOM_WEIGHTS,
                      threshold, "clip.mp4")


def _grid(fig) -> list:
    """The image axes (every axes but the colour bar), in drawing order."""
    return [ax for ax in fig.axes if ax.get_label().startswith("panel ")]


def test_image_figure_labels_every_column_and_the_colour_bar() -> None:
    fig = heatmap_figure(_data(1))
    axes = _grid(fig)
    titles = [ax.get_title() for ax in axes]
    assert titles == ["input", "group 1 scores\nkeeps 50%", "group 2 scores\nkeeps 25%", "kept patches\n25% of all"]
    assert axes[0].get_ylabel() == "image"
    bars = [ax for ax in fig.axes if ax.get_label() == COLORBAR_AXES]
    assert len(bars) == 1 and bars[0].get_ylabel() == COLORBAR_LABEL
    title = fig._suptitle.get_text()
    assert "clip.mp4" in title and "predicted ride (p=0.41)" in title and f"weights: {RANDOM_WEIGHTS}" in title
    assert any("threshold 0.50" in text.get_text() for text in fig.texts)


def test_video_figure_labels_frames_and_rows_and_animation_matches() -> None:
    data = _data(3)
    fig = heatmap_figure(data)
    axes = _grid(fig)
    assert len(axes) == 4 * 3 and len(fig.axes) == 4 * 3 + 1  # rows: input, two groups, kept; columns: frames
    assert [ax.get_title() for ax in axes[:3]] == ["frame 0", "frame 4", "frame 8"]
    assert [axes[r * 3].get_ylabel() for r in range(4)] == ["input", "group 1 scores\nkeeps 50%",
                                                           "group 2 scores\nkeeps 25%", "kept patches\n25% of all"]
    bar = next(ax for ax in fig.axes if ax.get_label() == COLORBAR_AXES)
    assert bar.get_ylabel() == COLORBAR_LABEL
    steps = animation_frames(data)
    assert len(steps) == 3 and len({s.shape for s in steps}) == 1 and steps[0].dtype == np.uint8
    one = heatmap_figure(data.frame(1))
    assert _grid(one)[0].get_ylabel() == "frame 4" and _grid(one)[1].get_title() == "group 1 scores\nkeeps 50%"
    assert figure_to_array(one).shape == steps[1].shape


def test_overlay_greys_patches_dropped_earlier() -> None:
    data = _data(1, threshold=None)
    fig = heatmap_figure(data)
    group1, group2, kept = (np.asarray(_grid(fig)[p].get_images()[0].get_array()) for p in (1, 2, 3))
    assert not (group1 == 128).all(axis=-1).any()  # every patch enters group 1
    assert (group2[:16] == 128).all() and not (group2[16:] == 128).all(axis=-1).any()
    assert (kept[:24] == 128).all() and (kept[24:] == data.frames[0, 24:]).all()
    assert not any("threshold" in text.get_text() for text in fig.texts)


def test_weights_are_named_with_sha256_in_titles_and_json(tmp_path, capsys) -> None:
    from iared_video.methods import build_model

    cfg = load_config(None, IMAGE_OPTS + ["OUTPUT_DIR", str(tmp_path)])
    assert describe_weights(cfg) == RANDOM_WEIGHTS
    path = tmp_path / "weights.pth"
    torch.save(build_model(cfg).state_dict(), path)
    cfg = load_config(None, IMAGE_OPTS + ["OUTPUT_DIR", str(tmp_path), "TEST.CHECKPOINT_FILE_PATH", str(path)])
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert describe_weights(cfg) == f"{path} (sha256 {digest})"
    image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "in.png")
    cfg = load_config(None, IMAGE_OPTS + ["OUTPUT_DIR", str(tmp_path), "TEST.CHECKPOINT_FILE_PATH", str(path),
                                          "VISUALIZE.INPUT", str(tmp_path / "in.png")])
    result = run_visualize(cfg)[0]
    assert result["weights"] == f"weights.pth (sha256 {digest[:12]})"
    assert os.path.getsize(result["files"]["figure"]) > 0


@pytest.mark.parametrize("tool", ["visualize", "interpreter"])
def test_tools_print_the_weights(tmp_path, tool) -> None:
    import subprocess
    import sys

    from PIL import Image

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    image, cfg = tmp_path / "in.png", tmp_path / "tiny.yaml"
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(image)
    cfg.write_text("MODEL: {MODEL_NAME: deit}\n")
    args = {"visualize": ["--cfg", str(cfg), "--input", str(image), "OUTPUT_DIR", str(tmp_path)],
            "interpreter": ["--cfg", str(cfg), "-p", str(image), "-o", str(tmp_path)]}[tool]
    proc = subprocess.run([sys.executable, os.path.join(root, "tools", f"{tool}.py"), *args, *IMAGE_OPTS],
                          capture_output=True, text=True, cwd=root, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"weights: {RANDOM_WEIGHTS}" in proc.stdout.splitlines()


def test_uint8_frames_undo_normalisation_channel_last() -> None:
    from iared_video.visualization.overlay import to_uint8_frames

    # (C=3, T=2, H=1, W=2): channel c of frame t, column x holds (c + 3 t + 6 x) / 17 before normalising,
    # that is 15 (c + 3 t + 6 x) grey levels.
    pixels = torch.tensor([[[[(c + 3 * t + 6 * x) / 17 for x in range(2)]] for t in range(2)] for c in range(3)])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    x = (pixels - torch.tensor(mean).view(3, 1, 1, 1)) / torch.tensor(std).view(3, 1, 1, 1)
    frames = to_uint8_frames(x, mean, std)
    assert frames.shape == (2, 1, 2, 3) and frames.dtype == np.uint8
    for t in range(2):
        for xx in range(2):
            assert frames[t, 0, xx].tolist() == [15 * (c + 3 * t + 6 * xx) for c in range(3)]
    assert to_uint8_frames(x[:, 0], mean, std).shape == (1, 1, 2, 3)  # an image is one frame
