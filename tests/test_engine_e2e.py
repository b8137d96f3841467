"""End to end through the same trainer and tester: image (tiny timm DeiT) curriculum, video via run_net."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from iared_video.engine import checkpoint as ckpt
from iared_video.engine.logging import setup_logging
from iared_video.engine.tester import test as run_test
from iared_video.engine.trainer import train
from iared_video.methods import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Images(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"inputs": torch.randn(3, 32, 32, generator=g) + (i % 2), "label": i % 2, "index": i}


def image_loader(cfg, split):
    return DataLoader(Images(), batch_size=4, shuffle=split == "train", generator=torch.Generator())


def test_image_curriculum_through_trainer_and_tester(tmp_path):
    cfg = load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_tiny_patch16_224", "MODEL.NUM_CLASSES",
                             "2", "DATA.DATASET", "imagenet", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
                             "IARED.NUM_GROUPS", "3", "IARED.INTERPRETER_EPOCHS", "1", "IARED.BACKBONE_EPOCHS", "1",
                             "IARED.INTERPRETER_OPTIMIZER", "adam", "SOLVER.OPTIMIZING_METHOD", "adam",
                             "SOLVER.BASE_LR", "4e-5", "TEST.NUM_SPATIAL_CROPS", "1", "OUTPUT_DIR", str(tmp_path),
                             "DEVICE", "cpu", "LOG_PERIOD", "1"])
    setup_logging(cfg.OUTPUT_DIR)
    train(cfg, loader_fn=image_loader)
    names = [os.path.basename(p) for p in ckpt.list_checkpoints(str(tmp_path))]
    assert names == [ckpt.checkpoint_name(e) for e in range(1, 7)]
    last = ckpt.load_checkpoint(ckpt.list_checkpoints(str(tmp_path))[-1])
    assert last["stages"] == ["interpreter_g1", "backbone_g1", "interpreter_g2", "backbone_g2", "interpreter_g3",
                              "backbone_g3"]
    results = run_test(cfg, loader_fn=image_loader)
    saved = json.loads((tmp_path / "test_results.json").read_text())
    assert {"top1_err", "top5_err", "images_per_s", "keep_ratio_per_group"} <= set(saved)
    assert saved["num_images"] == 8 and len(saved["keep_ratio_per_group"]) == 3
    assert results.checkpoint.endswith("checkpoint_epoch_00006.pyth")
    assert (tmp_path / "test_predictions.csv").read_text().count("\n") == 9
    log = (tmp_path / "stdout.log").read_text()
    assert '"stage": "interpreter_g3"' in log and '"reward":' in log and '"advantage":' in log


def kept_fraction_by_hand(cfg) -> float:
    """Patch tokens with informative score >= IARED.THRESHOLD over all patch tokens of every test view (D=1: the
    one interpreter's scores decide), counted from the newest checkpoint's model."""
    from iared_video.datasets import construct_loader
    from iared_video.engine.tester import load_test_weights
    from iared_video.methods import build_model

    model = build_model(cfg)
    load_test_weights(model, "", cfg.OUTPUT_DIR)
    kept = total = 0
    with torch.no_grad():
        for batch in construct_loader(cfg, "test"):
            scores = model.eval()(batch["inputs"], return_policy=True).scores[0]
            kept, total = kept + int((scores >= cfg.IARED.THRESHOLD).sum()), total + scores.numel()
    return kept / total


@pytest.mark.slow
def test_video_run_net_on_synthetic(tmp_path):
    from iared_video.synthetic import generate_video_dataset

    data = tmp_path / "data"
    generate_video_dataset(str(data), num_videos=48, seed=0)  # >= 1 test video per class
    out = tmp_path / "out"
    cfg_path = os.path.join(ROOT, "configs", "Synthetic", "tsf_tiny_iared.yaml")
    opts = ["DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out), "IARED.INTERPRETER_EPOCHS", "1",
            "IARED.BACKBONE_EPOCHS", "1", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4",
            "DATA_LOADER.NUM_WORKERS", "0"]
    cmd = [sys.executable, os.path.join(ROOT, "tools", "run_net.py"), "--cfg", cfg_path, *opts]
    assert subprocess.run(cmd, cwd=ROOT, timeout=900).returncode == 0
    results = json.loads((out / "test_results.json").read_text())
    # 48 videos over 8 classes: 6 per class, of which the test split takes 6 - round(0.85 * 6) = 1
    assert results["num_videos"] == 8 and results["num_videos_missing_views"] == 0
    cfg = load_config(cfg_path, opts)
    assert cfg.IARED.NUM_GROUPS == 1
    assert results["keep_ratio"] == pytest.approx(kept_fraction_by_hand(cfg), abs=1e-6)
    assert results["clips_per_s"] > 0 and (out / "test_predictions.csv").exists()
