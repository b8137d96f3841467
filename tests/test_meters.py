"""TestMeter: clip-1 and video-1 by hand (3 views per video), a video missing a view, train/val meters."""

import math

import pytest
import torch

from iared_video.engine.meters import TestMeter, TrainMeter, ValMeter, aggregate_views, topk_errors


def _logits(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def _rows():
    # 1 temporal x 3 spatial views; centre view is spatial index 1. Two classes.
    video = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    spatial = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])  # video 2 misses spatial view 2
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    logits = _logits(
        [4.0, 0.0], [0.0, 1.0], [4.0, 0.0],  # video 0: centre wrong, softmax mean right (label 0)
        [0.0, 2.0], [0.0, 3.0], [5.0, 0.0],  # video 1: centre right; mean of softmax -> class 1? worked below
        [0.0, 1.0], [0.0, 1.0],  # video 2: incomplete
    )
    return video, torch.zeros_like(video), spatial, logits, labels


def test_clip1_and_video1_by_hand():
    video, temporal, spatial, logits, labels = _rows()
    out = aggregate_views(video, temporal, spatial, logits, labels, num_temporal=1, num_spatial=3)
    # clip-1 (centre views): video 0 wrong, video 1 right, video 2 right -> 1/3 wrong
    assert out["clip1_err"] == pytest.approx(100 / 3)
    # video 1: p(class 1) per view = sigmoid(2), sigmoid(3), sigmoid(-5) -> mean
    p1 = (1 / (1 + math.exp(-2)) + 1 / (1 + math.exp(-3)) + 1 / (1 + math.exp(5))) / 3
    assert p1 > 0.5  # so video 1 is right; video 0: mean p(class 0) > 0.5 -> right
    assert out["video1_err"] == 0.0
    assert out["num_videos_scored"] == 2
    assert out["num_videos_missing_views"] == 1
    assert out["videos_missing_views"] == [{"video_index": 2, "missing_views": [(0, 2)]}]
    pred1 = [p for p in out["video_predictions"] if p["video_index"] == 1][0]
    assert pred1["prediction"] == 1 and pred1["probability"] == pytest.approx(p1)


def test_softmax_average_differs_from_logit_average():
    # logit average would pick class 0 (mean logits [3.33, 1.33]), softmax average picks class 1
    video = torch.tensor([0, 0, 0])
    logits = _logits([10.0, 0.0], [0.0, 2.0], [0.0, 2.0])
    out = aggregate_views(video, torch.zeros(3, dtype=torch.long), torch.arange(3), logits,
                          torch.tensor([1, 1, 1]), 1, 3)
    assert out["video1_err"] == 0.0


def test_duplicate_views_count_once():
    video, temporal, spatial, logits, labels = _rows()
    dup = aggregate_views(torch.cat([video, video[:3]]), torch.cat([temporal, temporal[:3]]),
                          torch.cat([spatial, spatial[:3]]), torch.cat([logits, logits[:3]]),
                          torch.cat([labels, labels[:3]]), 1, 3)
    assert dup["num_videos"] == 3 and dup["video1_err"] == 0.0


def test_test_meter_summarize_video_and_image():
    video, temporal, spatial, logits, labels = _rows()
    meter = TestMeter(1, 3)
    keep = torch.full((8, 1), 0.5)
    meter.update(logits, labels, video, temporal, spatial, keep, torch.full((8,), 2.0))
    out = TestMeter.summarize(meter.tensors(), 1, 3, video=True)
    assert out["keep_ratio_per_group"] == [0.5] and out["gmacs_per_view"] == 2.0
    image = TestMeter.summarize(meter.tensors(), 1, 1, video=False)
    # per-row argmax vs labels: rows 1 and 5 wrong -> 25% top-1 error; 2 classes -> top-5 error 0
    assert image["top1_err"] == pytest.approx(25.0) and image["top5_err"] == 0.0


def test_topk_errors():
    scores = _logits([0.1, 0.5, 0.4], [0.9, 0.05, 0.05])
    errs = topk_errors(scores, torch.tensor([2, 0]), ks=(1, 2))
    assert errs == {1: 50.0, 2: 0.0}


def test_train_and_val_meters():
    meter = TrainMeter()
    meter.update({"loss": 1.0, "substituted": 1}, num=2)
    meter.update({"loss": 4.0, "substituted": 2}, num=1)
    assert meter.summary() == {"loss": 2.0, "substituted": 3}
    val = ValMeter()
    val.update(_logits([1.0, 0.0], [1.0, 0.0]), torch.tensor([0, 1]), torch.tensor([[1.0, 0.5], [1.0, 0.7]]))
    out = ValMeter.summarize(*val.tensors())
    assert out.top1_err == 50.0 and out.keep_ratio == pytest.approx(0.6)
