"""ImageNet-folder dataset: labels from sorted folders, odd image modes, timm transforms, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from iared_video.datasets import build_dataset, construct_loader


@pytest.fixture
def image_dir(tmp_path):
    colour = np.zeros((40, 60, 3), np.uint8)
    colour[..., 0] = 200
    for split in ("train", "val"):
        for name in ("zebra", "ant"):  # sorted: ant = 0, zebra = 1
            (tmp_path / split / name).mkdir(parents=True)
        Image.fromarray(colour).save(tmp_path / split / "zebra" / "rgb.png")
        Image.fromarray(np.full((30, 50), 90, np.uint8), mode="L").save(tmp_path / split / "ant" / "gray.png")
        rgba = np.concatenate([colour[:20, :20], np.zeros((20, 20, 1), np.uint8)], axis=-1)
        Image.fromarray(rgba, mode="RGBA").save(tmp_path / split / "zebra" / "alpha.PNG")
        Image.fromarray(colour[:5, :3]).save(tmp_path / split / "ant" / "tiny.jpg", quality=95)
        (tmp_path / split / "ant" / "notes.txt").write_text("ignored: not an image extension")
    (tmp_path / "train" / "ant" / "broken.png").write_text("not a png")
    (tmp_path / "train" / "ant" / "empty.jpg").touch()
    return tmp_path


def cfg_for(small_cfg, data_dir, **extra):
    return small_cfg(data_dir, {"DATA.DATASET": "imagenet", "DATA.IMAGE_INTERPOLATION": "bilinear", **extra})


def test_labels_are_sorted_folder_indices(image_dir, small_cfg):
    dataset = build_dataset("imagenet", cfg_for(small_cfg, image_dir), "val")
    assert dataset.classes == ["ant", "zebra"]
    names = {path.rsplit("/", 1)[-1]: label for path, label in zip(dataset.paths, dataset.labels)}
    assert names == {"gray.png": 0, "tiny.jpg": 0, "alpha.PNG": 1, "rgb.png": 1}


def test_eval_transform_and_odd_modes_become_rgb(image_dir, small_cfg):
    dataset = build_dataset("imagenet", cfg_for(small_cfg, image_dir), "test")  # no test/: falls back to val/
    assert dataset.root.endswith("val")
    for i in range(len(dataset)):
        sample = dataset[i]
        inputs, name = sample["inputs"], sample["path"].rsplit("/", 1)[-1]
        assert inputs.shape == (3, 32, 32) and inputs.dtype == torch.float32 and sample["valid"]
        assert (sample["video_index"], sample["temporal_index"], sample["spatial_index"]) == (i, 0, 0)
        means = inputs.mean(dim=(1, 2)) * 255  # MEAN 0, STD 1 in small_cfg
        if name == "gray.png":
            np.testing.assert_allclose(means, [90, 90, 90], atol=1)
        if name in ("alpha.PNG", "rgb.png"):  # alpha dropped, colour kept
            np.testing.assert_allclose(means, [200, 0, 0], atol=2)


def test_eval_resizes_by_crop_pct_then_centre_crops(tmp_path, small_cfg):
    (tmp_path / "val" / "a").mkdir(parents=True)
    ramp = np.broadcast_to(np.arange(128, dtype=np.uint8)[None, :, None] * 2, (128, 128, 3)).copy()
    Image.fromarray(ramp).save(tmp_path / "val" / "a" / "ramp.png")
    cfg = cfg_for(small_cfg, tmp_path, **{"DATA.TEST_CROP_SIZE": 48, "DATA.IMAGE_CROP_PCT": 0.75})
    inputs = build_dataset("imagenet", cfg, "val")[0]["inputs"]
    # 128 -> resize to 64 (= 48 / 0.75): column j ~ 2 * (2j + 0.5); centre crop 48 keeps columns 8..55 of 64
    profile = inputs[0].mean(dim=0).numpy() * 255
    assert inputs.shape == (3, 48, 48)
    assert profile[0] == pytest.approx(4 * 8 + 1, abs=6) and profile[-1] == pytest.approx(4 * 55 + 1, abs=6)


def test_train_transform_and_broken_images(image_dir, small_cfg, caplog):
    dataset = build_dataset("imagenet", cfg_for(small_cfg, image_dir), "train")
    assert len(dataset) == 6
    with caplog.at_level(logging.WARNING, logger="iared_video.datasets"):
        samples = [dataset[i] for i in range(len(dataset))]
    assert all(s["inputs"].shape == (3, 32, 32) and s["valid"] for s in samples)
    substituted = {s["index"] for s in samples if s["substituted"]}
    broken = {i for i, p in enumerate(dataset.paths) if p.endswith(("broken.png", "empty.jpg"))}
    assert substituted == broken and len(dataset.failures) == 2
    assert any("empty.jpg" in r.getMessage() and "empty file" in r.getMessage() for r in caplog.records)
    assert any("broken.png" in r.getMessage() and "UnidentifiedImageError" in r.getMessage() for r in caplog.records)


def test_test_split_flags_broken_images_and_loader_collates(image_dir, small_cfg):
    cfg = cfg_for(small_cfg, image_dir, **{"TEST.SPLIT": "train", "TEST.BATCH_SIZE": 4})
    loader = construct_loader(cfg, "test")
    batches = list(loader)
    valid = torch.cat([b["valid"] for b in batches])
    assert len(valid) == 6 and int((~valid).sum()) == 2
    inputs = torch.cat([b["inputs"] for b in batches])
    assert not inputs[~valid].any() and not torch.cat([b["substituted"] for b in batches]).any()


def test_more_classes_than_the_model_is_an_error(image_dir, small_cfg):
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        build_dataset("imagenet", cfg_for(small_cfg, image_dir, **{"MODEL.NUM_CLASSES": 1}), "train")


def test_randaugment_and_random_erasing_options(image_dir, small_cfg):
    cfg = cfg_for(small_cfg, image_dir,
                  **{"DATA.IMAGE_AUTO_AUGMENT": "rand-m9-mstd0.5-inc1", "DATA.IMAGE_RE_PROB": 0.5})
    dataset = build_dataset("imagenet", cfg, "train")
    assert "RandAugment" in repr(dataset.transform) and "RandomErasing" in repr(dataset.transform)
    assert dataset[0]["inputs"].shape == (3, 32, 32)


def test_random_flip_and_crop_scale_reach_the_train_transform(tmp_path, small_cfg):
    (tmp_path / "train" / "a").mkdir(parents=True)
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 64, 3)).copy()
    Image.fromarray(ramp).save(tmp_path / "train" / "a" / "ramp.png")

    def slopes(flip: bool) -> list[float]:
        # scale [1, 1]: every crop is the whole (square) image, so only the flip can change the ramp
        cfg = cfg_for(small_cfg, tmp_path, **{"DATA.RANDOM_FLIP": flip, "DATA.IMAGE_SCALE": [1.0, 1.0]})
        dataset = build_dataset("imagenet", cfg, "train")
        profiles = [dataset[0]["inputs"][0].mean(dim=0) for _ in range(20)]
        return [float(p[-1] - p[0]) for p in profiles]

    assert all(s > 0.8 for s in slopes(False))  # the whole 0..1 ramp, left dark to right bright, never mirrored
    flipped = slopes(True)
    assert any(s > 0.8 for s in flipped) and any(s < -0.8 for s in flipped)  # all 20 alike: p = 2^-19
