"""Heatmaps scored as weakly-supervised foreground segmentation.

Binarisation rules (``binarize``):
    * ``"mean"`` (default, as Chefer et al. 2021 evaluate ImageNet-Segmentation): a pixel is
      foreground when its value is above the mean of its own map (per sample; a video clip is one map).
    * ``"fixed"``: above a fixed ``threshold`` after min-max normalising each map to [0, 1].
    * ``"otsu"``: Otsu's threshold of each min-max normalised map (256-bin histogram).

Metrics (two classes, foreground and background; counts are accumulated over the whole set,
then divided, as in the segmentation literature):
    * pixel accuracy: correct pixels / all pixels;
    * mean class accuracy (mAcc): mean over {fg, bg} of per-class recall;
    * mIoU: mean over {fg, bg} of intersection / union;
    * mAP: average precision of the continuous map as a foreground score (no binarisation),
      computed per sample (sklearn's step-wise definition, ties grouped) and averaged over samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from iared_video.config.choices import BINARIZE_RULES  # listed once, with the config keys

__all__ = ["BINARIZE_RULES", "binarize", "otsu_threshold", "average_precision", "confusion", "SegmentationMeter",
           "segmentation_scores"]


def _minmax(values: Tensor) -> Tensor:
    low, high = values.min(), values.max()
    return (values - low) / (high - low).clamp_min(1e-12)


def otsu_threshold(values: Tensor, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the bin edge maximising between-class variance."""
    hist = torch.histc(values.float().flatten(), bins=bins, min=0.0, max=1.0).double()
    prob = hist / hist.sum().clamp_min(1)
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    w0 = prob.cumsum(0)
    mu0 = (prob * centres).cumsum(0)
    between = (mu0[-1] * w0 - mu0) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    return float((between[:-1].argmax() + 1).item() / bins)


def binarize(heatmap: Tensor, rule: str = "mean", threshold: float = 0.5) -> Tensor:
    """Foreground mask of one map (any shape) under ``rule`` (see the module docstring)."""
    if rule == "mean":
        return heatmap > heatmap.float().mean()
    if rule not in BINARIZE_RULES:
        raise ValueError(f"binarisation rule must be one of {BINARIZE_RULES}, got {rule!r}")
    norm = _minmax(heatmap.float())
    return norm > (threshold if rule == "fixed" else otsu_threshold(norm))


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision of ``scores`` ranking the positive ``labels`` (flattened; ties grouped).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds, as
    ``sklearn.metrics.average_precision_score``. Returns NaN when there is no positive.
    """
    scores, labels = scores.flatten().double(), labels.flatten().bool()
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    scores, hits = scores[order], labels[order].double()
    tp = hits.cumsum(0)
    last_of_tie = torch.ones_like(scores, dtype=torch.bool)
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    tp = tp[last_of_tie]
    seen = torch.arange(1, len(scores) + 1, dtype=torch.float64)[last_of_tie]
    precision, recall = tp / seen, tp / positives
    previous = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def confusion(pred: Tensor, target: Tensor) -> Tensor:
    """``[tp, fp, fn, tn]`` pixel counts (int64) of a binary prediction against a binary target."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and mask {tuple(target.shape)} differ in shape")
    pred, target = pred.bool(), target.bool()
    tp = (pred & target).sum()
    fp = (pred & ~target).sum()
    fn = (~pred & target).sum()
    tn = (~pred & ~target).sum()
    return torch.stack([tp, fp, fn, tn]).long()


def _ratio(num: Tensor, den: Tensor) -> float:
    return float(num / den) if den > 0 else float("nan")


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")


@dataclass
class SegmentationMeter:
    """Accumulates heatmap-vs-mask statistics over a set of samples.

    Args:
        rule: binarisation rule (``BINARIZE_RULES``).
        threshold: the threshold of the ``"fixed"`` rule.
    """

    rule: str = "mean"
    threshold: float = 0.5
    counts: Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.long))
    aps: list[float] = field(default_factory=list)

    def update(self, heatmap: Tensor, mask: Tensor) -> None:
        """Add one sample: a continuous map and its binary mask of the same shape (e.g. ``(T, H, W)``)."""
        heatmap, mask = heatmap.detach().cpu(), mask.detach().cpu().bool()
        self.counts += confusion(binarize(heatmap, self.rule, self.threshold), mask)
        self.aps.append(average_precision(heatmap, mask))

    def compute(self) -> dict[str, float]:
        """``pixel_accuracy``, ``mean_class_accuracy``, ``miou``, ``map`` (in [0, 1]) and ``num_samples``."""
        tp, fp, fn, tn = self.counts
        return {
            "pixel_accuracy": _ratio(tp + tn, self.counts.sum()),
            "mean_class_accuracy": _nanmean([_ratio(tp, tp + fn), _ratio(tn, tn + fp)]),
            "miou": _nanmean([_ratio(tp, tp + fp + fn), _ratio(tn, tn + fn + fp)]),
            "map": _nanmean(self.aps),
            "num_samples": len(self.aps),
        }


def segmentation_scores(heatmap: Tensor, mask: Tensor, rule: str = "mean", threshold: float = 0.5) -> dict[str, float]:
    """All metrics of a single map against its mask."""
    meter = SegmentationMeter(rule, threshold)
    meter.update(heatmap, mask)
    return meter.compute()
