"""Segmentation metrics on maps and masks worked by hand."""

import math

import numpy as np
import pytest
import torch

from iared_video.interpret.metrics import (
    SegmentationMeter,
    average_precision,
    binarize,
    otsu_threshold,
    segmentation_scores,
)


def _case():
    # 2x3 map; mean = (0.9+0.8+0.1+0.2+0.6+0.0)/6 = 0.4333 -> fg prediction [[1,1,0],[0,1,0]]
    heat = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.6, 0.0]])
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    return heat, mask


def test_hand_worked_scores():
    heat, mask = _case()
    assert binarize(heat).tolist() == [[True, True, False], [False, True, False]]
    s = segmentation_scores(heat, mask)
    # tp=2, fp=1, fn=1, tn=2
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["mean_class_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert s["miou"] == pytest.approx((2 / 4 + 2 / 4) / 2)
    # ranking 0.9(+) 0.8(+) 0.6(-) 0.2(-) 0.1(+) 0.0(-): AP = (1 + 1 + 3/5) / 3
    assert s["map"] == pytest.approx((1 + 1 + 0.6) / 3)


def test_meter_accumulates_counts_over_samples():
    heat, mask = _case()
    meter = SegmentationMeter()
    meter.update(heat, mask)
    meter.update(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool))  # constant map: nothing above mean
    out = meter.compute()
    # totals tp=2 fp=1 fn=1+6 tn=2 over 12 px
    assert out["pixel_accuracy"] == pytest.approx(4 / 12)
    assert out["miou"] == pytest.approx((2 / 10 + 2 / 10) / 2)
    assert out["num_samples"] == 2


def test_rules_and_ap_edge_cases():
    heat, _ = _case()
    assert binarize(heat, "fixed", 0.7).sum() == 2  # 0.9, 0.8 above 0.7 of [0, 0.9] -> 0.63
    two_modes = torch.cat([torch.full((50,), 0.1), torch.full((50,), 0.9)])
    assert 0.1 < otsu_threshold(two_modes) <= 0.9
    assert binarize(two_modes, "otsu").sum() == 50
    with pytest.raises(ValueError):
        binarize(heat, "median")
    assert math.isnan(average_precision(torch.rand(5), torch.zeros(5)))
    assert average_precision(torch.ones(4), torch.tensor([1, 0, 0, 0])) == pytest.approx(0.25)  # all tied


def test_ap_matches_sklearn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 10, (200,), generator=gen).float()  # many ties
    labels = torch.rand(200, generator=gen) > 0.6
    assert average_precision(scores, labels) == pytest.approx(
        metrics.average_precision_score(labels.numpy(), scores.numpy()))


def test_imagenet_seg_reader_v5(tmp_path):
    np = pytest.importorskip("numpy")
    scipy_io = pytest.importorskip("scipy.io")
    from iared_video.interpret.imagenet_seg import ImageNetSegmentation

    imgs, gts, wrapped = (np.empty((2, 1), dtype=object) for _ in range(3))
    imgs[0, 0] = np.random.randint(0, 255, (5, 7, 3), dtype=np.uint8)
    imgs[1, 0] = np.random.randint(0, 255, (4, 6), dtype=np.uint8)  # grayscale
    inner = np.empty((1, 1), dtype=object)
    inner[0, 0] = (np.arange(35).reshape(5, 7) % 2).astype(np.uint8)
    gts[0, 0], gts[1, 0] = inner, np.ones((4, 6), np.uint8)  # 1x1-cell-wrapped and bare masks
    path = tmp_path / "gtsegs.mat"
    scipy_io.savemat(path, {"value": {"img": imgs, "gt": gts}})
    data = ImageNetSegmentation(str(path))
    assert len(data) == 2
    image, mask = data[0]
    assert (image == imgs[0, 0]).all() and mask.dtype == bool and mask.sum() == 17
    image, mask = data[1]
    assert image.shape == (4, 6, 3) and mask.all()


def _miou_by_hand(heat: np.ndarray, mask: np.ndarray) -> float:
    """Mean over foreground and background of intersection / union, the map binarised above its own mean."""
    fg, mask = heat > heat.mean(), mask.astype(bool)
    ious = [(a & b).sum() / (a | b).sum() for a, b in ((fg, mask), (~fg, ~mask))]
    return float(np.mean(ious))


def test_eval_heatmaps_tool_on_synthetic_video(tmp_path, monkeypatch):
    """The tool's rollout mIoU equals the one worked by hand from the same model, sample and rollout map."""
    import json

    from iared_video.experiments import heatmaps as eval_heatmaps
    from iared_video.experiments.heatmaps import video_samples
    from iared_video.experiments.main_job import SYNTHETIC_CONFIG_DIR
    from iared_video.interpret.baselines import BASELINES
    from iared_video.interpret.heatmap import policy_heatmaps
    from iared_video.methods import load_config
    from iared_video.synthetic import generate_video_dataset
    from iared_video.visualization import build_vis_model

    data = tmp_path / "v"
    generate_video_dataset(str(data), num_videos=6, seed=0, num_classes=2)
    opts = ["MODEL.EMBED_DIM", "64", "MODEL.DEPTH", "2", "MODEL.NUM_HEADS", "2", "MODEL.NUM_CLASSES", "2",
            "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
            "DATA.PATH_TO_DATA_DIR", str(data), "DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)]
    cfg_path = str(SYNTHETIC_CONFIG_DIR / "tsf_tiny_iared.yaml")
    cfg = load_config(cfg_path, opts)
    x, mask, _, _ = next(video_samples(cfg, "val"))
    assert x.shape == (3, 4, 32, 32) and mask.shape == (4, 32, 32) and mask.dtype == torch.bool and mask.any()
    torch.manual_seed(0)
    model = build_vis_model(cfg)
    monkeypatch.setattr(eval_heatmaps, "build_vis_model", lambda _: model)
    out = tmp_path / "eval.json"
    rc = eval_heatmaps.main(["--cfg", cfg_path, "--max-samples", "1", "--faithfulness", "--steps", "2",
                             "--methods", "iared_g1", "rollout", "--out", str(out), *opts])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"iared_g1", "rollout"} and results["rollout"]["num_samples"] == 1
    assert "deletion_auc" in results["iared_g1"]
    with torch.no_grad():
        pred = model(x[None], modes=["keep_all"] * model.num_groups).argmax(-1)
    scores = BASELINES["rollout"](model.backbone, x[None], pred).float()
    heat = policy_heatmaps([scores], model.backbone.embed(x[None]).grid, x.shape[-2:], cfg.VISUALIZE.UPSAMPLE)[0, 0]
    assert results["rollout"]["miou"] == pytest.approx(_miou_by_hand(heat.numpy(), mask.numpy()), abs=1e-6)
