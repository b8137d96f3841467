"""experiments/probe.py (tools/probe_synthetic.py): both probe models on real decoded frames of a tiny generated set."""

from __future__ import annotations

import json

import pytest
import torch

from iared_video.experiments import probe as probe_synthetic
from iared_video.synthetic import generate_video_dataset


@pytest.mark.parametrize("name", ["cnn", "tsf"])
def test_probe_models_map_clips_to_logits(name: str) -> None:
    model = probe_synthetic.build_probe(name, 5, 32, 4)
    assert model(torch.rand(2, 3, 4, 32, 32)).shape == (2, 5)


def test_probe_tsf_is_the_main_job_backbone() -> None:
    net = probe_synthetic.TinyTimeSformer(8, 96, 8).net
    assert (net.embed_dim, len(net.blocks), net.patch_size) == (96, 6, 16)  # vit_micro_patch16's shape


def test_probe_main_trains_the_tsf_on_decoded_videos(tmp_path, monkeypatch) -> None:
    """The reported accuracies are the trained model's, recomputed here on the decoded splits."""
    data = tmp_path / "syn"
    generate_video_dataset(str(data), num_videos=12, seed=0, num_classes=2)
    out = tmp_path / "probe.json"
    built, build = [], probe_synthetic.build_probe
    monkeypatch.setattr(probe_synthetic, "build_probe", lambda *args: built.append(build(*args)) or built[-1])
    argv = ["--data", str(data), "--model", "tsf", "--size", "32", "--frames", "4", "--epochs", "1", "--out", str(out)]
    assert probe_synthetic.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["args"]["model"] == "tsf" and result["num_classes"] == 2
    row = result["curve"][-1]
    assert row["epoch"] == 1
    splits = probe_synthetic.load_split_tensors(str(data), 4, 32)
    # by hand: 6 videos per class split (0.7, 0.15, 0.15) -> round(6 * [0.7, 0.85, 1]) = [4, 5, 6] -> 4 / 1 / 1
    assert {s: len(labels) for s, (_, labels) in splits.items()} == {"train": 8, "val": 2, "test": 2}
    model = built[0].eval()
    for split, (clips, labels) in splits.items():
        with torch.no_grad():
            acc = (model(clips).argmax(1) == labels).float().mean().item()
        assert row[f"{split}_acc"] == pytest.approx(round(acc, 4), abs=1e-6), split
