"""``tools/sweep_resolution.py`` end to end on a tiny DeiT (32 px checkpoint, evaluated at 32 and 48 px)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iared_video.experiments import sweep_resolution as sweep
from iared_video.synthetic import generate_image_dataset

PATCH, DIM, DEPTH, CLASSES = 16, 192, 12, 2  # vit_tiny_patch16_224
TINY_DEIT = ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_tiny_patch16_224", "MODEL.NUM_CLASSES", str(CLASSES),
             "IARED.NUM_GROUPS", "3", "IARED.INTERPRETER_DIM", "8", "DROP.RATIO", "0.5",
             "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"]
FAST = ["--batch-size", "2", "--num-batches", "1", "--iters", "1", "--resolutions", "32", "48"]


def dense_gmacs(size: int) -> float:
    """Dense ViT-Ti per image, written out: patch conv, 12 blocks on N + 1 tokens, final norm (class token), head."""
    n = (size // PATCH) ** 2
    t = n + 1
    block = 4 * t * DIM * DIM + 2 * t * t * DIM + 2 * t * DIM * 4 * DIM + 2 * 5 * t * DIM
    return (n * DIM * 3 * PATCH * PATCH + DEPTH * block + 5 * DIM + DIM * CLASSES) / 1e9


def test_sweep_resolution_with_labels(tmp_path: Path) -> None:
    data = tmp_path / "images"
    generate_image_dataset(str(data), num_images=10, seed=0, num_classes=CLASSES, min_short_side=48,
                           max_short_side=64)
    out = tmp_path / "out"
    sweep.main([*FAST, "--data-split", "val", "--fixed-policies", "random", "--out-dir", str(out),
                             *TINY_DEIT, "DATA.DATASET", "imagenet", "DATA.PATH_TO_DATA_DIR", str(data),
                             "DATA_LOADER.NUM_WORKERS", "0"])
    result = json.loads((out / "sweep_resolution.json").read_text())
    rows = {(r["method"], r["resolution"]): r for r in result["rows"]}
    assert set(rows) == {(m, s) for m in ("dense", "iared", "random") for s in (32, 48)}
    for size in (32, 48):
        assert rows["dense", size]["tokens"] == (size // PATCH) ** 2
        assert rows["dense", size]["gmacs"] == pytest.approx(dense_gmacs(size), rel=1e-9)
        # 1 batch of 2
        assert all(rows[m, size]["accuracy"] in (0.0, 50.0, 100.0) for m in ("dense", "iared", "random"))
        assert rows["dense", size]["speedup"] == 1.0 and rows["dense", size]["agreement"] == 100.0
    growth = rows["dense", 48]["gmacs"] / rows["dense", 32]["gmacs"]
    assert growth == pytest.approx(dense_gmacs(48) / dense_gmacs(32), rel=1e-9)
    # by hand: N = 4 (32 px) or 9 (48 px) patches; dropping 0.5 removes floor(0.5 N + 0.5) = 2 or 5 of them
    assert [rows["random", s]["keep_ratio"] for s in (32, 48)] == pytest.approx([2 / 4, 4 / 9])
    assert [rows["dense", s]["pos_embed"] for s in (32, 48)] == ["as is", "resampled"]
    assert result["pos_embed"]["48"] == f"resampled (1, 5, {DIM}) -> (1, 10, {DIM})"
    assert result["accuracy"] == "top-1 on val"
    assert (out / "sweep_resolution.png").stat().st_size > 0


def test_sweep_resolution_without_data_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep.main([*FAST, "--thresholds", "0.3", "0.7", "--out-dir", str(tmp_path), *TINY_DEIT])
    result = json.loads((tmp_path / "sweep_resolution.json").read_text())
    assert all(r["accuracy"] is None for r in result["rows"]) and result["accuracy"] == "no data"
    assert [r["threshold"] for r in result["rows"] if r["method"] == "iared"] == [0.3, 0.7, 0.3, 0.7]
    assert "no data" in capsys.readouterr().out
    assert (tmp_path / "sweep_resolution.png").stat().st_size > 0
