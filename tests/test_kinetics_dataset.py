"""Kinetics CSV dataset: sampling, test crops, the test-view grid, loaders and CSV parsing."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from iared_video.datasets import build_dataset, construct_loader, shuffle_dataset
from iared_video.datasets.kinetics import read_split_csv
from iared_video.datasets.loader import worker_init_fn

STEP = 8  # brightness step per frame index in counter videos


def counter_video(num_frames: int, height: int, width: int) -> np.ndarray:
    """Flat grey frames whose brightness encodes the frame index (index * STEP)."""
    values = (np.arange(num_frames) * STEP).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).copy()


def gradient_video(height: int, width: int, axis: int) -> np.ndarray:
    """Two grey frames with a 0..255 ramp along ``axis`` (1: rows, 2: columns)."""
    ramp = np.linspace(0, 255, (height, width)[axis - 1]).astype(np.uint8)
    shape = [1, 1, 1, 1]
    shape[axis] = len(ramp)
    return np.broadcast_to(ramp.reshape(shape), (2, height, width, 3)).copy()


def write_split(data_dir, split: str, rows: list[tuple[str, int]]) -> None:
    (data_dir / f"{split}.csv").write_text("".join(f"{path} {label}\n" for path, label in rows))


def frame_numbers(inputs: torch.Tensor) -> np.ndarray:
    """Recover the frame index of each frame of a (C, T, H, W) clip of a counter video (MEAN 0, STD 1)."""
    return np.rint(inputs.mean(dim=(0, 2, 3)).numpy() * 255 / STEP).astype(int)


@pytest.fixture
def counter_dir(tmp_path, write_video):
    write_video(tmp_path / "a.mp4", counter_video(20, 24, 40))
    write_video(tmp_path / "b.mp4", counter_video(30, 40, 24))
    rows = [("a.mp4", 1), ("b.mp4", 2)]
    for split in ("train", "val", "test"):
        write_split(tmp_path, split, rows)
    return tmp_path


def test_val_takes_the_centred_clip(counter_dir, small_cfg):
    dataset = build_dataset("kinetics", small_cfg(counter_dir), "val")
    sample = dataset[0]
    assert sample["inputs"].shape == (3, 4, 32, 32) and sample["inputs"].dtype == torch.float32
    # 20 frames, clip of 4 x 2 = 8 frames: centred window [6, 13] -> linspace -> [6, 8, 10, 13]
    np.testing.assert_array_equal(frame_numbers(sample["inputs"]), [6, 8, 10, 13])
    assert (sample["label"], sample["index"], sample["video_index"]) == (1, 0, 0)
    assert (sample["temporal_index"], sample["spatial_index"]) == (0, 0)
    assert sample["valid"] and not sample["substituted"] and sample["num_failures"] == 0
    assert sample["path"] == str(counter_dir / "a.mp4")


def test_train_clip_is_random_contiguous_and_cropped(counter_dir, small_cfg):
    dataset = build_dataset("kinetics", small_cfg(counter_dir), "train")
    starts = set()
    for _ in range(12):
        sample = dataset[1]  # 30 frames
        assert sample["inputs"].shape == (3, 4, 32, 32) and sample["label"] == 2
        assert (sample["temporal_index"], sample["spatial_index"]) == (-1, -1)
        numbers = frame_numbers(sample["inputs"])
        assert numbers[0] >= 0 and numbers[-1] <= 29 and numbers[-1] - numbers[0] == pytest.approx(7, abs=1)
        starts.add(int(numbers[0]))
    assert len(starts) > 2


def test_target_fps_scales_the_window(counter_dir, small_cfg):
    cfg = small_cfg(counter_dir, {"DATA.TARGET_FPS": 50})  # video 25 fps: the clip covers 4 source frames
    numbers = frame_numbers(build_dataset("kinetics", cfg, "val")[1]["inputs"])
    np.testing.assert_array_equal(numbers, [13, 14, 15, 16])  # 30 frames, window [13, 16]


@pytest.mark.parametrize("height, width, axis", [(24, 64, 2), (64, 24, 1)])
def test_three_test_crops_take_start_centre_end_of_long_side(tmp_path, write_video, small_cfg, height, width, axis):
    write_video(tmp_path / "g.mp4", gradient_video(height, width, axis))
    write_split(tmp_path, "test", [("g.mp4", 0)])
    dataset = build_dataset("kinetics", small_cfg(tmp_path, {"DATA.TEST_CROP_SIZE": 24, "MODEL.PATCH_SIZE": 8}), "test")
    crops = [dataset[i]["inputs"] for i in range(3)]
    # short side 24 stays 24, long side 64: crops cover [0, 24), [20, 44), [40, 64) of the ramp
    for crop, first in zip(crops, (0, 20, 40)):
        assert crop.shape == (3, 4, 24, 24)
        profile = crop.mean(dim=(0, 1, 2 if axis == 2 else 3)).numpy() * 255  # along the long side
        expected = np.linspace(0, 255, 64)[first : first + 24]
        np.testing.assert_allclose(profile, expected, atol=8)
        other = crop.mean(dim=(0, 1, 3 if axis == 2 else 2)).numpy()
        assert other.std() < 0.02  # constant across the short side


def test_every_test_view_returned_exactly_once(counter_dir, small_cfg):
    cfg = small_cfg(counter_dir, {"TEST.NUM_ENSEMBLE_VIEWS": 2, "TEST.NUM_SPATIAL_CROPS": 3, "TEST.BATCH_SIZE": 5})
    loader = construct_loader(cfg, "test")
    assert len(loader.dataset) == 2 * 2 * 3
    seen, first_frames = [], {}
    for batch in loader:
        assert batch["inputs"].shape[1:] == (3, 4, 32, 32) and batch["valid"].all()
        for i in range(len(batch["index"])):
            key = (int(batch["video_index"][i]), int(batch["temporal_index"][i]), int(batch["spatial_index"][i]))
            seen.append(key)
            first_frames[key] = frame_numbers(batch["inputs"][i])[0]
    assert sorted(seen) == list(itertools.product(range(2), range(2), range(3)))
    assert first_frames[(0, 0, 0)] == 0 and first_frames[(0, 1, 0)] == 12  # 20 frames: windows start at 0 and 12
    assert first_frames[(1, 1, 2)] == 22  # 30 frames: second window starts at 22


def test_loaders_shuffle_train_only_and_reseed_per_epoch(counter_dir, small_cfg):
    rows = [(f"{'ab'[i % 2]}.mp4", i % 3) for i in range(9)]
    write_split(counter_dir, "train", rows)
    write_split(counter_dir, "val", rows)
    cfg = small_cfg(counter_dir, {"TRAIN.BATCH_SIZE": 4, "TEST.BATCH_SIZE": 4})
    train, val = construct_loader(cfg, "train"), construct_loader(cfg, "val")
    assert train.drop_last and not val.drop_last and len(train) == 2 and len(val) == 3
    assert not train.pin_memory or torch.cuda.is_available()
    order = lambda loader: [int(i) for i in loader.sampler]  # noqa: E731
    assert order(val) == list(range(9))
    shuffle_dataset(train, 3)
    first = order(train)
    shuffle_dataset(train, 3)
    assert order(train) == first != list(range(9))
    shuffle_dataset(train, 4)
    assert order(train) != first


def test_worker_processes_are_seeded_and_batches_collate(counter_dir, small_cfg):
    cfg = small_cfg(counter_dir, {"DATA_LOADER.NUM_WORKERS": 2, "TRAIN.BATCH_SIZE": 1})
    loader = construct_loader(cfg, "train")
    batches = list(loader)
    assert len(batches) == 2 and all(b["inputs"].shape == (1, 3, 4, 32, 32) for b in batches)
    assert sorted(int(b["label"][0]) for b in batches) == [1, 2]
    assert worker_init_fn(0) is None  # callable in the main process too


def test_csv_parsing_prefix_separator_class_names_and_errors(tmp_path, small_cfg):
    (tmp_path / "train.csv").write_text("# comment\nclips/my video.mp4,jumping\n\n/abs/b.mp4,1\n")
    (tmp_path / "classnames.json").write_text(json.dumps({"running": 0, "jumping": 1}))
    cfg = small_cfg(tmp_path, {"DATA.PATH_LABEL_SEPARATOR": ","})
    dataset = build_dataset("kinetics", cfg, "train")
    assert dataset.paths == [str(tmp_path / "clips/my video.mp4"), "/abs/b.mp4"] and dataset.labels == [1, 1]
    paths, _ = read_split_csv(str(tmp_path / "train.csv"), ",", "/data/k400", str(tmp_path), {"jumping": 1})
    assert paths == ["/data/k400/clips/my video.mp4", "/abs/b.mp4"]
    (tmp_path / "val.csv").write_text("a.mp4 1\nno-label-here\n")
    with pytest.raises(ValueError, match=r"val.csv:2"):
        build_dataset("kinetics", small_cfg(tmp_path), "val")
    (tmp_path / "val.csv").write_text("a.mp4 12\n")
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_dataset("kinetics", small_cfg(tmp_path), "val")
    with pytest.raises(KeyError, match="kinetics"):
        build_dataset("nope", cfg, "train")


def test_distributed_sampler_and_pin_memory_rules(counter_dir, small_cfg, tmp_path):
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from iared_video.datasets.loader import uses_cuda

    assert not uses_cuda(small_cfg(counter_dir, {"DEVICE": "cpu"}))
    assert uses_cuda(small_cfg(counter_dir, {"DEVICE": "cuda"}))  # asked for: pinned even before CUDA is checked
    assert uses_cuda(small_cfg(counter_dir, {"DEVICE": "auto"})) == torch.cuda.is_available()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train = construct_loader(small_cfg(counter_dir), "train")
        test = construct_loader(small_cfg(counter_dir), "test")
        assert isinstance(train.sampler, DistributedSampler) and train.sampler.shuffle
        assert isinstance(test.sampler, DistributedSampler) and not test.sampler.shuffle
        shuffle_dataset(train, 5)
        assert train.sampler.epoch == 5
    finally:
        dist.destroy_process_group()
