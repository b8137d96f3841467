"""tools/head_to_head.py over every registered method, from a main-job style folder of tiny random checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import json
import os

import pytest
import torch

from iared_video.engine.checkpoint import save_checkpoint
from iared_video.methods import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# vit_micro (the image configs' arch): 6 blocks, 16 patches at 64 px
TINY = ["MODEL.NUM_CLASSES", "2", "MODEL.PRETRAINED", "", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64",
        "IARED.INTERPRETER_DIM", "8", "DATA_LOADER.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "4", "EVIT.LOCATIONS",
        "[1, 3, 4]", "DEVICE", "cpu", "DROP.RATIO", "0.5", "IARED.THRESHOLD", "0.5"]
TRAINED = ("dense", "iared", "random", "attention")  # what a main-job folder holds


def _h2h():
    return importlib.import_module("iared_video.experiments.head_to_head")


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


def accuracy_from_predictions(path: str) -> float:
    """100 x the fraction of ``test_predictions.csv`` rows (one per test image) whose prediction is the label."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return 100.0 * sum(r["prediction"] == r["label"] for r in rows) / len(rows)


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
    # dense scores every token 1: no pixel lies above the mean, so IoU(fg) = 0 and IoU(bg) = bg / all pixels
    fg = foreground_fraction(h2h.method_cfg("dense", "image", out, [*TINY, "DATA.PATH_TO_DATA_DIR", image_set]), 2)
    assert 0.0 < fg < 1.0 and by["dense"]["miou"] == pytest.approx((1.0 - fg) / 2, abs=1e-6)
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
