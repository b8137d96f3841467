"""Interpretability: informative-score heatmaps, attribution baselines and their evaluation."""

from iared_video.interpret.heatmap import keep_masks, policy_heatmaps, tokens_to_grid, upsample_grid
from iared_video.interpret.metrics import (
                                           BINARIZE_RULES,
                                           SegmentationMeter,
                                           average_precision,
                                           binarize,
                                           segmentation_scores,
)

__all__ = ["policy_heatmaps", "keep_masks", "tokens_to_grid", "upsample_grid", "BINARIZE_RULES", "binarize",
           "average_precision", "SegmentationMeter", "segmentation_scores"]
