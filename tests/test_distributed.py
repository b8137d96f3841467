"""Two gloo processes on CPU: same losses as one process with the same global batch; test metrics gathered."""

import json
import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from iared_video.engine import distributed as du
from iared_video.engine.logging import setup_logging
from iared_video.engine.tester import test as run_test
from iared_video.engine.trainer import train
from iared_video.methods import load_config

NUM = 12


class Clips(Dataset):
    """Tiny video set: 4 videos x 3 spatial views at test time, random clips for training."""

    def __len__(self):
        return NUM

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"inputs": torch.randn(3, 2, 32, 32, generator=g), "label": (i // 3) % 3, "index": i,
                "video_index": i // 3, "temporal_index": 0, "spatial_index": i % 3, "valid": True}


def loader_fn(cfg, split):
    dataset = Clips()
    sampler = DistributedSampler(dataset, shuffle=False) if du.get_world_size() > 1 else None
    return DataLoader(dataset, batch_size=cfg.TRAIN.BATCH_SIZE if split == "train" else 2, sampler=sampler)


def _cfg(out, batch, world):
    return load_config(None, ["MODEL.NUM_CLASSES", "3", "MODEL.EMBED_DIM", "16", "MODEL.DEPTH", "2",
                              "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32",
                              "DATA.TEST_CROP_SIZE", "32", "METHOD.NAME", "dense", "SOLVER.MAX_EPOCH", "2",
                              "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.BASE_LR", "0.1", "TRAIN.BATCH_SIZE",
                              str(batch), "TRAIN.EVAL_PERIOD", "1", "LOG_PERIOD", "1", "OUTPUT_DIR", str(out),
                              "NUM_GPUS", str(world), "DEVICE", "cpu", "TEST.NUM_SPATIAL_CROPS", "3"])


def _job(info, cfg):
    torch.set_num_threads(1)
    setup_logging(cfg.OUTPUT_DIR)
    model = train(cfg, info, loader_fn=loader_fn)
    run_test(cfg, info, loader_fn=loader_fn, model=model)


def _stats(out, kind):
    lines = (out / "stdout.log").read_text().splitlines()
    return [json.loads(line.split("json_stats: ", 1)[1]) for line in lines
            if "json_stats: " in line and f'"_type": "{kind}"' in line]


@pytest.mark.timeout(300)
def test_two_gloo_processes_match_one(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    du.launch_job(_job, 1, (_cfg(single, 4, 1),))
    du.launch_job(_job, 2, (_cfg(double, 2, 2),), init_method=f"file://{tmp_path / 'rendezvous'}",
                  backend="gloo")
    one, two = _stats(single, "train_iter"), _stats(double, "train_iter")
    assert len(one) == len(two) == 6  # 2 epochs x 3 steps of global batch 4
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
    val_one, val_two = _stats(single, "val_epoch")[-1], _stats(double, "val_epoch")[-1]
    assert val_two["num_samples"] == val_one["num_samples"] == NUM
    assert val_two["top1_err"] == pytest.approx(val_one["top1_err"])
    res_one = json.loads((single / "test_results.json").read_text())
    res_two = json.loads((double / "test_results.json").read_text())
    assert res_two["num_videos"] == res_one["num_videos"] == 4  # views of both ranks gathered
    assert res_two["num_videos_missing_views"] == 0 and res_two["num_processes"] == 2
    assert res_two["video1_err"] == pytest.approx(res_one["video1_err"])
    assert res_two["clip1_err"] == pytest.approx(res_one["clip1_err"])
    assert not os.path.exists(double / "checkpoints" / "rank1")
