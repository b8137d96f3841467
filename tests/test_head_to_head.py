"""tools/head_to_head.py: its pieces, and the whole --quick flow on a tiny synthetic video set."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["MODEL.NUM_CLASSES", "2", "MODEL.EMBED_DIM", "32", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
        "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "IARED.INTERPRETER_DIM", "8",
        "MODEL.PRETRAINED", ""]  # from scratch: the shipped pre-trained ViT is wider than EMBED_DIM 32


def _h2h():
    return importlib.import_module("iared_video.experiments.head_to_head")


def test_head_to_head_pieces(tmp_path) -> None:
    h2h = _h2h()
    opts = h2h.epoch_opts(None, quick=True)
    assert opts[:2] == ["SOLVER.MAX_EPOCH", "1"]
    cfg = h2h.method_cfg("dynamicvit", "video", str(tmp_path), opts, "dense.pyth")
    assert cfg.METHOD.NAME == "dynamicvit" and cfg.SOLVER.MAX_EPOCH == 1
    assert h2h.method_cfg("attention", "image", str(tmp_path), opts, "d.pyth", 0.3).DROP.RATIO == 0.3
    rows = [{"kind": "video", "method": m, "accuracy": a, "gmacs": g, "throughput": t}
            for m, a, g, t in (("dense", 90.0, 1.0, 10.0), ("dynamicvit", 88.0, 0.6, 15.0))]
    h2h.write_outputs(rows, str(tmp_path))
    assert (tmp_path / "head_to_head.json").is_file() and (tmp_path / "video_pareto_gmacs.png").is_file()
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a given data folder is never generated
        h2h.prepare_data(h2h.method_cfg("dense", "video", str(tmp_path), ["DATA.PATH_TO_DATA_DIR", "/nonexistent"]),
                         "video")


def accuracy_from_predictions(path: str) -> float:
    """100 x the fraction of ``test_predictions.csv`` rows (one per scored video) whose prediction is the label."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return 100.0 * sum(r["prediction"] == r["label"] for r in rows) / len(rows)


def miou_by_hand(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """mIoU over the pixels of all (heatmap, mask) pairs: each map binarised above its own mean, then
    intersection / union of foreground and of background summed over the pairs, the two IoUs averaged."""
    inter, union = np.zeros(2), np.zeros(2)
    for heat, mask in pairs:
        fg, mask = heat > heat.mean(), mask.astype(bool)
        for c, (a, b) in enumerate(((fg, mask), (~fg, ~mask))):
            inter[c] += (a & b).sum()
            union[c] += (a | b).sum()
    return float(np.mean(inter / union))


def policy_maps_by_hand(h2h, cfg, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(heatmap of the single group's scores, mask) of the first ``count`` val clips, from the trained model."""
    from iared_video.experiments.heatmaps import video_samples
    from iared_video.interpret.heatmap import policy_heatmaps

    model, pairs = h2h.load_trained(cfg), []
    for (x, mask, _, _), _ in zip(video_samples(cfg, "val"), range(count)):
        with torch.no_grad():
            out = model(x[None], return_policy=True)
        heat = policy_heatmaps([out.scores[0]], out.grid, x.shape[-2:])[0, 0]
        pairs.append((heat.numpy(), mask.reshape(heat.shape).numpy()))
    return pairs


@pytest.mark.slow
def test_quick_run_end_to_end_then_no_train_reads_the_same(tmp_path) -> None:
    from iared_video.synthetic import generate_video_dataset

    h2h, data, out = _h2h(), tmp_path / "data", tmp_path / "out"
    generate_video_dataset(str(data), num_videos=12, seed=0, num_classes=2)
    common = ["--out", str(out), "--kinds", "video", "--quick", "--max-samples", "2", "--large-batch", "2",
              "--iters", "1", "DATA.PATH_TO_DATA_DIR", str(data), *TINY]
    rows = h2h.main(common)
    methods = ["dense", "iared", "dynamicvit", "random", "attention", "temporal_diff"]
    assert [r["method"] for r in rows] == methods
    for row in rows:
        predictions = os.path.join(out, "video", row["method"], "test_predictions.csv")
        assert row["accuracy"] == pytest.approx(accuracy_from_predictions(predictions), abs=1e-9), row
        assert row["gmacs"] > 0 and row["throughput"] > 0 and row["num_samples"] == 2, row
    by = {r["method"]: r for r in rows}
    opts = h2h.epoch_opts(None, True) + ["DATA.PATH_TO_DATA_DIR", str(data), *TINY]
    cfgs = {m: cfg for m, (cfg, _) in h2h.train_kind("video", str(out), opts, train=False).items()}
    iared_maps = policy_maps_by_hand(h2h, cfgs["iared"], 2)  # the tsf_tiny_iared config has one group (D=1)
    assert by["iared"]["miou"] == pytest.approx(miou_by_hand(iared_maps), abs=1e-6)  # the meter divides in float32
    fg = sum(int(m.sum()) for _, m in iared_maps) / sum(m.size for _, m in iared_maps)
    # dense scores every token 1: no pixel lies above the mean, so IoU(fg) = 0 and IoU(bg) = bg / all pixels
    assert by["dense"]["miou"] == pytest.approx((1.0 - fg) / 2, abs=1e-6)
    num_patches = 2 * (32 // 16) ** 2  # 2 frames of 2 x 2 patches
    assert by["dense"]["keep_ratio"] == 1.0 and by["dense"]["gmacs"] > by["random"]["gmacs"]
    # floor(rho^s N), as the official DynamicViT code keeps at inference (issue 17)
    assert by["dynamicvit"]["keep_ratio"] == pytest.approx(math.floor(round(0.7 ** 3 * num_patches, 6)) / num_patches)
    assert by["random"]["keep_ratio"] == by["attention"]["keep_ratio"] == by["temporal_diff"]["keep_ratio"] < 1.0
    for name in ("head_to_head.json", "video_pareto_gmacs.png", "video_pareto_throughput.png"):
        assert (out / name).stat().st_size > 0, name
    trained = {m: json.loads((out / "video" / m / "test_results.json").read_text()) for m in methods}
    assert all(r["num_videos"] == 2 for r in trained.values())

    again = h2h.main(["--no-train", *common])  # reads the results; the baselines are rebuilt with their drop ratio
    assert [(r["method"], r["accuracy"], r["gmacs"], r["keep_ratio"]) for r in again] == \
        [(r["method"], r["accuracy"], r["gmacs"], r["keep_ratio"]) for r in rows]
    kept = max(1, num_patches - math.floor(cfgs["random"].DROP.RATIO * num_patches + 0.5)) / num_patches
    assert kept == pytest.approx(by["random"]["keep_ratio"])
