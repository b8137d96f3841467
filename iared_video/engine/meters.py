"""Meters: running training statistics, validation error and multi-view test metrics.

Metric code is pure (tensors in, numbers out); the meters only collect.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from iared_video.utils.results import ValResults

__all__ = ["TrainMeter", "ValMeter", "TestMeter", "topk_errors", "aggregate_views"]


def topk_errors(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Top-k error in percent for each k (k capped at the number of classes)."""
    if labels.numel() == 0:
        return {k: float("nan") for k in ks}
    out = {}
    for k in ks:
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        hit = (top == labels[:, None]).any(dim=1).float().mean().item()
        out[k] = 100.0 * (1.0 - hit)
    return out


class TrainMeter:
    """Sample-weighted running means of scalar statistics, plus summed counters."""

    COUNTERS = ("substituted", "decoder_fallbacks")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def update(self, stats: dict[str, float], num: int = 1) -> None:
        """Add one step's ``stats`` measured over ``num`` samples."""
        for key, value in stats.items():
            if key in self.COUNTERS:
                self.counts[key] += int(value)
            else:
                self.sums[key] += float(value) * num
                self.weights[key] += num

    def summary(self) -> dict[str, float]:
        """Means of every statistic and totals of the counters."""
        out: dict[str, float] = {k: self.sums[k] / max(self.weights[k], 1e-12) for k in self.sums}
        out.update(self.counts)
        return out


class ValMeter:
    """Collects logits, labels and keep ratios; ``summary`` gives top-1/top-5 error and mean keep ratios."""

    def __init__(self) -> None:
        self.logits: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.keep: list[Tensor] = []

    def update(self, logits: Tensor, labels: Tensor, keep_ratios: Tensor) -> None:
        """``keep_ratios``: ``(B, D)`` fraction of patch tokens present after each group."""
        self.logits.append(logits.detach().float().cpu())
        self.labels.append(labels.detach().cpu())
        self.keep.append(keep_ratios.detach().float().cpu())

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        if not self.labels:
            return torch.empty(0, 1), torch.empty(0, dtype=torch.long), torch.empty(0, 1)
        return torch.cat(self.logits), torch.cat(self.labels), torch.cat(self.keep)

    @staticmethod
    def summarize(logits: Tensor, labels: Tensor, keep: Tensor) -> ValResults:
        """Top-1/top-5 error, the mean keep ratio after each group and after the last."""
        errors = topk_errors(logits, labels)
        out = ValResults(errors[1], errors[5], int(labels.numel()))
        if keep.numel():
            out.keep_ratio_per_group = keep.mean(0).tolist()
            out.keep_ratio = keep[:, -1].mean().item()
        return out


def aggregate_views(video_index: Tensor, temporal_index: Tensor, spatial_index: Tensor, logits: Tensor,
                    labels: Tensor, num_temporal: int, num_spatial: int) -> dict:
    """Clip-1 and video-1 error from per-view logits.

    * clip-1: the single centre view of each video (temporal view ``num_temporal // 2``, spatial crop
      ``num_spatial // 2``), scored alone.
    * video-1: the softmax probabilities of all ``num_temporal * num_spatial`` views averaged.
    Repeated views (e.g. sampler padding in distributed runs) count once. A video missing any view is
    left out of video-1 and listed under ``videos_missing_views``; a video without its centre view is left
    out of clip-1.

    Returns:
        dict with clip1_err, video1_err (percent), counts, ``video_predictions`` (per complete video:
        index, label, prediction, probability of the prediction) and the videos missing views.
    """
    views: dict[int, dict[tuple[int, int], Tensor]] = defaultdict(dict)
    label_of: dict[int, int] = {}
    for row in range(video_index.shape[0]):
        vid = int(video_index[row])
        views[vid].setdefault((int(temporal_index[row]), int(spatial_index[row])), logits[row])
        label_of[vid] = int(labels[row])
    expected = {(t, s) for t in range(num_temporal) for s in range(num_spatial)}
    centre = (num_temporal // 2, num_spatial // 2)
    clip_hits, video_hits, predictions, missing = [], [], [], []
    for vid in sorted(views):
        got = views[vid]
        if centre in got:
            clip_hits.append(int(got[centre].argmax()) == label_of[vid])
        if not expected <= set(got):
            missing.append({"video_index": vid, "missing_views": sorted(expected - set(got))})
            continue
        probs = torch.stack([got[v].float().softmax(-1) for v in sorted(expected)]).mean(0)
        pred = int(probs.argmax())
        video_hits.append(pred == label_of[vid])
        predictions.append({"video_index": vid, "label": label_of[vid], "prediction": pred,
                            "probability": float(probs[pred])})
    return {
        "clip1_err": _error(clip_hits), "video1_err": _error(video_hits),
        "num_videos": len(views), "num_videos_scored": len(video_hits), "num_clip1_scored": len(clip_hits),
        "num_videos_missing_views": len(missing), "videos_missing_views": missing,
        "video_predictions": predictions,
    }


def _error(hits: list[bool]) -> float:
    return 100.0 * (1.0 - sum(hits) / len(hits)) if hits else float("nan")


class TestMeter:
    """Collects per-view test outputs and reduces them to clip-1 / video-1 (video) or top-1 / top-5 (image).

    Video-1 averages the *softmax probabilities* of the views, not their logits: each view then has the
    same bounded say (one over-confident view cannot outvote the others by logit scale), and it is the
    PySlowFast/TimeSformer practice (their heads apply softmax at test time and views are summed), so our
    numbers compare with theirs. Clip-1 is the centre view alone (middle temporal view, centre crop).
    """

    __test__ = False  # a meter, not a pytest test class

    def __init__(self, num_temporal: int = 1, num_spatial: int = 1) -> None:
        self.num_temporal, self.num_spatial = num_temporal, num_spatial
        self.rows: dict[str, list[Tensor]] = defaultdict(list)

    def update(self, logits: Tensor, labels: Tensor, video_index: Tensor, temporal_index: Tensor,
               spatial_index: Tensor, keep_ratios: Tensor, gmacs: Tensor | None = None) -> None:
        """Add a batch of valid views; ``keep_ratios`` is ``(B, D)``, ``gmacs`` ``(B,)``."""
        for key, value in (("logits", logits.float()), ("labels", labels), ("video_index", video_index),
                           ("temporal_index", temporal_index), ("spatial_index", spatial_index),
                           ("keep", keep_ratios.float())):
            self.rows[key].append(value.detach().cpu())
        if gmacs is not None:
            self.rows["gmacs"].append(gmacs.detach().float().cpu())

    def tensors(self) -> dict[str, Tensor]:
        return {k: torch.cat(v) for k, v in self.rows.items()}

    @staticmethod
    def summarize(rows: dict[str, Tensor], num_temporal: int, num_spatial: int, video: bool) -> dict:
        """Metrics from (gathered) rows: errors, mean keep ratio per group and mean GMACs per view."""
        out: dict = {}
        if video:
            out.update(aggregate_views(rows["video_index"], rows["temporal_index"], rows["spatial_index"],
                                       rows["logits"], rows["labels"], num_temporal, num_spatial))
        else:
            errors = topk_errors(rows["logits"], rows["labels"])
            out.update({"top1_err": errors[1], "top5_err": errors[5], "num_images": int(rows["labels"].numel())})
        keep = rows["keep"]
        out["keep_ratio_per_group"] = keep.mean(0).tolist() if keep.numel() else []
        out["keep_ratio"] = keep[:, -1].mean().item() if keep.numel() else float("nan")
        out["gmacs_per_view"] = rows["gmacs"].mean().item() if "gmacs" in rows else None
        return out
