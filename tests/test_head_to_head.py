"""tools/head_to_head.py: its pieces, every registered method from a main-job style folder of tiny random
checkpoints, and the whole --quick flow on a tiny synthetic video set."""

from __future__ import annotations

import csv
import importlib
import json
import math
import os

import numpy as np
import pytest
import torch

from iared_video.engine.checkpoint import save_checkpoint
from iared_video.methods import build_model

TINY_VIDEO = ["MODEL.NUM_CLASSES", "2", "MODEL.EMBED_DIM", "32", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
              "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
              "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "IARED.INTERPRETER_DIM", "8",
              "MODEL.PRETRAINED", ""]  # from scratch: the shipped pre-trained ViT is wider than EMBED_DIM 32
# vit_micro (the image configs' arch): 6 blocks, 16 patches at 64 px
TINY = ["MODEL.NUM_CLASSES", "2", "MODEL.PRETRAINED", "", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64",
        "IARED.INTERPRETER_DIM", "8", "DATA_LOADER.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "4", "EVIT.LOCATIONS",
        "[1, 3, 4]", "DEVICE", "cpu", "DROP.RATIO", "0.5", "IARED.THRESHOLD", "0.5"]
TRAINED = ("dense", "iared", "random", "attention")  # what a main-job folder holds


def _h2h():
    return importlib.import_module("iared_video.experiments.head_to_head")


def accuracy_from_predictions(path: str) -> float:
    """100 x the fraction of ``test_predictions.csv`` rows (one per scored view) whose prediction is the label."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return 100.0 * sum(r["prediction"] == r["label"] for r in rows) / len(rows)


def dense_miou_by_hand(foreground: float) -> float:
    """Dense scores every token 1: no pixel lies above the mean, so IoU(fg) = 0 and IoU(bg) = bg / all pixels."""
    return (1.0 - foreground) / 2

def _fake_run(h2h, run: str, data: str) -> dict[str, str]:
    """``run/<label>/checkpoints/checkpoint_epoch_00001.pyth`` of tiny random models, config dumped inside."""
    paths = {}
    for seed, label in enumerate(TRAINED):
        cfg = h2h.method_cfg(label, "image", os.path.join(run, "_configs"), [*TINY, "DATA.PATH_TO_DATA_DIR", data])
        torch.manual_seed(seed)
        model = build_model(cfg)
        for interpreter in getattr(model.policy, "interpreters", []):  # sharper scores: IA-RED^2 drops tokens
            for param in (interpreter.query.weight, interpreter.key.weight, interpreter.policy_token):
                torch.nn.init.normal_(param, std=0.5)
        paths[label] = os.path.join(run, label, "checkpoints", "checkpoint_epoch_00001.pyth")
        save_checkpoint(paths[label], {"model_state": model.state_dict(), "stage": 0, "epoch": 0, "iteration": 0,
                                       "global_epoch": 1, "epoch_done": True, "cfg": cfg.dump()})
    return paths


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> str:
    from iared_video.synthetic import generate_image_dataset

    data = tmp_path_factory.mktemp("images")
    generate_image_dataset(str(data), num_images=10, seed=0, num_classes=2, min_short_side=64, max_short_side=80)
    return str(data)


def foreground_fraction(cfg, count: int) -> float:
    """Mask pixels over all pixels of the first ``count`` val images (the heatmap evaluation's views)."""
    from iared_video.experiments.heatmaps import image_samples

    masks = [mask.numpy().astype(bool) for (_, mask, _, _), _ in zip(image_samples(cfg, "val"), range(count))]
    return sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)


def test_every_method_from_checkpoints_and_off_the_shelf_matched_at_gmacs(tmp_path, image_set) -> None:
    h2h, run, out = _h2h(), str(tmp_path / "main_job_image"), str(tmp_path / "h2h")
    paths = _fake_run(h2h, run, image_set)
    rows = h2h.main(["--run", f"image={run}", "--kinds", "image", "--methods", "all", "--no-train", "--match",
                     "gmacs", "--max-samples", "2", "--large-batch", "3", "--iters", "1", "--out", out])
    by = {r["method"]: r for r in rows}
    # no checkpoint and --no-train: the Gumbel variant and DynamicViT are left out; temporal_diff needs video
    assert list(by) == ["dense", "iared", "random", "attention", "tome", "evit"]
    for row in rows:
        predictions = os.path.join(out, "image", row["method"], "test_predictions.csv")
        assert row["accuracy"] == pytest.approx(accuracy_from_predictions(predictions), abs=1e-9), row
        assert row["gmacs"] > 0 and row["throughput"] > 0 and row["throughput_b3"] > 0, row
    fg = foreground_fraction(h2h.method_cfg("dense", "image", out, [*TINY, "DATA.PATH_TO_DATA_DIR", image_set]), 2)
    assert 0.0 < fg < 1.0 and by["dense"]["miou"] == pytest.approx(dense_miou_by_hand(fg), abs=1e-6)
    assert {m: by[m]["checkpoint"] for m in TRAINED} == paths
    assert by["tome"]["checkpoint"] == by["evit"]["checkpoint"] == paths["dense"]  # off the shelf, dense weights
    assert [by[m]["has_scores"] for m in by] == [False, True, True, True, False, True]
    target = by["iared"]["gmacs"]
    for m in ("tome", "evit"):  # matched from below, as close as the knob allows
        assert by[m]["gmacs"] <= max(target, min_gmacs(h2h, m, out)) * (1 + 1e-9) < by["dense"]["gmacs"], m
    for name in ("head_to_head.json", "image_pareto_gmacs.png", "image_pareto_throughput.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert json.load(open(os.path.join(out, "head_to_head.json")))["rows"][0]["method"] == "dense"


def min_gmacs(h2h, label: str, out: str) -> float:
    """The cheapest setting of a method's knob (the match cannot go below it)."""
    method = h2h.get_method(label)
    cfg = h2h.method_cfg(label, "image", out, TINY)
    cheap = method.knob.low if method.knob.cost_rises else method.knob.high
    return h2h.gmacs_of(h2h.method_cfg(label, "image", out, [*TINY, method.knob.key, repr(cheap)])) if cfg else 0.0


def test_knob_bisection_lands_on_the_last_setting_within_the_target(tmp_path) -> None:
    h2h = _h2h()
    cfg = h2h.method_cfg("tome", "image", str(tmp_path), TINY)
    costs = [h2h.gmacs_of(h2h.method_cfg("tome", "image", str(tmp_path), [*TINY, "TOME.R", str(r)])) for r in range(5)]
    assert all(a > b for a, b in zip(costs, costs[1:]))  # more merging, fewer GMACs
    key, value = h2h.knob_for_gmacs(cfg, "tome", (costs[2] + costs[3]) / 2)
    assert (key, value) == ("TOME.R", "3")
    key, value = h2h.knob_for_gmacs(h2h.method_cfg("evit", "image", str(tmp_path), TINY), "evit", costs[2])
    cost = h2h.gmacs_of(h2h.method_cfg("evit", "image", str(tmp_path), [*TINY, key, value]))
    assert key == "EVIT.KEEP_RATE" and cost <= costs[2]
    assert h2h.method_labels(["all"])[0] == "dense" and "tome" in h2h.method_labels(["all"])
    assert h2h.config_path("temporal_diff", "image") is None


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
              "--iters", "1", "DATA.PATH_TO_DATA_DIR", str(data), *TINY_VIDEO]
    rows = h2h.main(common)
    methods = ["dense", "iared", "dynamicvit", "random", "attention", "temporal_diff"]
    assert [r["method"] for r in rows] == methods
    for row in rows:
        predictions = os.path.join(out, "video", row["method"], "test_predictions.csv")
        assert row["accuracy"] == pytest.approx(accuracy_from_predictions(predictions), abs=1e-9), row
        assert row["gmacs"] > 0 and row["throughput"] > 0 and row["num_samples"] == 2, row
    by = {r["method"]: r for r in rows}
    opts = h2h.epoch_opts(None, True) + ["DATA.PATH_TO_DATA_DIR", str(data), *TINY_VIDEO]
    cfgs = {m: cfg for m, (cfg, _) in h2h.train_kind("video", str(out), opts, train=False).items()}
    iared_maps = policy_maps_by_hand(h2h, cfgs["iared"], 2)  # the tsf_tiny_iared config has one group (D=1)
    assert by["iared"]["miou"] == pytest.approx(miou_by_hand(iared_maps), abs=1e-6)  # the meter divides in float32
    fg = sum(int(m.sum()) for _, m in iared_maps) / sum(m.size for _, m in iared_maps)
    assert by["dense"]["miou"] == pytest.approx(dense_miou_by_hand(fg), abs=1e-6)
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
