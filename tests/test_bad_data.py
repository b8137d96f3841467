"""Bad data loses nothing: retry, substitute (train/val), flag invalid (test); always logged and counted."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from iared_video.datasets import build_dataset, construct_loader
from iared_video.datasets import views as views_module
from iared_video.datasets.bad_data import substitute_index

LOGGERS = "iared_video.datasets"
# name -> substring of the logged reason
BROKEN = {"missing.mp4": "file not found", "empty.mp4": "empty file", "text.mp4": "decord:", "trunc.mp4": "pyav:"}
# readable but awkward: name -> (frames, height, width, codec, pix_fmt)
ODD = {
    "one_frame.mp4": (1, 32, 32, "libx264", "yuv420p"),
    "short.mp4": (3, 32, 48, "libx264", "yuv420p"),
    "tiny.mp4": (2, 9, 17, "libx264", "yuv444p"),
    "gray.mkv": (4, 24, 32, "ffv1", "gray"),
    "alpha.mov": (4, 24, 32, "png", "rgba"),
}


@pytest.fixture
def bad_dir(tmp_path, write_video):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "good.mp4", rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8))
    for name, (frames, height, width, codec, pix_fmt) in ODD.items():
        write_video(tmp_path / name, np.full((frames, height, width, 3), 150, np.uint8), codec=codec, pix_fmt=pix_fmt)
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "text.mp4").write_text("this is a text file, not a video\n" * 10)
    whole = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(whole[: len(whole) // 3])
    names = ["good.mp4", *ODD, *BROKEN]
    rows = "".join(f"{name} {i}\n" for i, name in enumerate(names))
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.csv").write_text(rows)
    return tmp_path, names


def count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = views_module.decode_clip

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(views_module, "decode_clip", counting)
    return calls


@pytest.mark.parametrize("split", ["train", "val"])
def test_broken_videos_are_substituted_logged_and_counted(bad_dir, small_cfg, caplog, split):
    data_dir, names = bad_dir
    dataset = build_dataset("kinetics", small_cfg(data_dir, {"MODEL.NUM_CLASSES": len(names)}), split)
    with caplog.at_level(logging.WARNING, logger=LOGGERS):
        samples = [dataset[i] for i in range(len(names))]
    for name, sample in zip(names, samples):
        assert sample["inputs"].shape == (3, 4, 32, 32) and torch.isfinite(sample["inputs"]).all()
        assert sample["valid"] and sample["index"] == names.index(name)
        broken = name in BROKEN
        assert sample["substituted"] == broken and (sample["num_failures"] >= 1) == broken
        if broken:  # the substitute is another, readable video with its own label
            assert not sample["path"].endswith(name) and sample["label"] == sample["video_index"] != sample["index"]
            assert any(name in r.getMessage() and BROKEN[name] in r.getMessage() and "substituted" in r.getMessage()
                       for r in caplog.records)
    failed = {path.rsplit("/", 1)[-1]: reason for path, reason in dataset.failures}
    assert set(failed) == set(BROKEN) and all(BROKEN[n] in failed[n] for n in BROKEN)


def test_test_split_never_substitutes(bad_dir, small_cfg, caplog):
    data_dir, names = bad_dir
    cfg = small_cfg(data_dir, {"MODEL.NUM_CLASSES": len(names), "TEST.NUM_SPATIAL_CROPS": 3})
    dataset = build_dataset("kinetics", cfg, "test")
    with caplog.at_level(logging.WARNING, logger=LOGGERS):
        samples = [dataset[i] for i in range(len(dataset))]
    assert len(samples) == 3 * len(names)
    for sample in samples:
        name = sample["path"].rsplit("/", 1)[-1]
        assert name == names[sample["video_index"]] and sample["label"] == sample["video_index"]
        assert sample["inputs"].shape == (3, 4, 32, 32) and not sample["substituted"]
        assert sample["valid"] == (name not in BROKEN)
        if name in BROKEN:
            assert sample["num_failures"] == 1 and not sample["inputs"].any()
    invalid = [r for r in caplog.records if "valid=False" in r.getMessage()]
    assert len(invalid) == 3 * len(BROKEN) and len(dataset.failures) == 3 * len(BROKEN)


def test_retries_only_help_transient_failures(bad_dir, small_cfg, monkeypatch):
    data_dir, names = bad_dir
    dataset = build_dataset("kinetics", small_cfg(data_dir, {"MODEL.NUM_CLASSES": len(names), "DATA.NUM_RETRIES": 3}),
                            "val")
    calls = count_decodes(monkeypatch)
    dataset[names.index("text.mp4")]
    assert calls[:3] == [str(data_dir / "text.mp4")] * 3 and len(calls) == 4  # 3 tries, then the substitute
    calls.clear()
    dataset[names.index("missing.mp4")]
    assert calls[0].endswith("missing.mp4") and len(calls) == 2  # permanent: one try
    calls.clear()
    assert dataset[names.index("text.mp4")]["substituted"] and len(calls) == 1  # known bad: not decoded again


def test_substitutes_are_deterministic_and_never_the_same_item():
    picks = [substitute_index(0, index=5, attempt=a, num_items=10, exclude=5) for a in range(50)]
    assert 5 not in picks and len(set(picks)) > 3
    assert picks == [substitute_index(0, index=5, attempt=a, num_items=10, exclude=5) for a in range(50)]
    assert picks != [substitute_index(1, index=5, attempt=a, num_items=10, exclude=5) for a in range(50)]


def test_all_broken_is_a_clear_error(tmp_path, small_cfg):
    (tmp_path / "train.csv").write_text("a.mp4 0\nb.mp4 1\n")
    dataset = build_dataset("kinetics", small_cfg(tmp_path, {"DATA.MAX_SUBSTITUTIONS": 4}), "train")
    with pytest.raises(RuntimeError, match="5 items in a row could not be read"):
        dataset[0]


def test_batches_report_failures_from_worker_processes(bad_dir, small_cfg):
    data_dir, names = bad_dir
    cfg = small_cfg(data_dir, {"MODEL.NUM_CLASSES": len(names), "DATA_LOADER.NUM_WORKERS": 2, "TEST.BATCH_SIZE": 5})
    batches = list(construct_loader(cfg, "val"))
    assert sum(int(b["substituted"].sum()) for b in batches) == len(BROKEN)
    assert sum(int(b["num_failures"].sum()) for b in batches) >= len(BROKEN)
    assert all(b["valid"].all() for b in batches)
    assert sum(len(b["index"]) for b in batches) == len(names)
