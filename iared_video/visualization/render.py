"""Rendering one input: the model's per-group scores and keep masks as a labelled figure, bare grids,
an animation (videos) and a json summary (see the package docstring for the files)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from iared_video.datasets.views import ViewSpec
from iared_video.interpret.heatmap import keep_masks, policy_heatmaps
from iared_video.utils.results import save_json
from iared_video.visualization.figure import FigureData, animation_frames, figure_to_array, heatmap_figure
from iared_video.visualization.overlay import grey_dropped, overlay_heatmap, tile, to_uint8_frames, write_label
from iared_video.visualization.writers import save_animation, save_png

__all__ = ["VisOptions", "visualize_input"]


@dataclass
class VisOptions:
    """Rendering choices."""

    upsample: str = "nearest"
    alpha: float = 0.5
    animation: str = "gif"
    fps: float = 4.0
    threshold: float | None = None  # drop threshold of the scores (drawn on the colour bar), if any


def _entering(keep: np.ndarray) -> np.ndarray:
    """``(D, T, H, W)`` bool: pixel's patch enters group j (present after group j - 1; all for group 1)."""
    return np.concatenate([np.ones_like(keep[:1]), keep[:-1]]).astype(bool)


def _panels(frames: np.ndarray, heat: np.ndarray, keep: np.ndarray, ratios: Sequence[float],
            opts: VisOptions) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Heatmap rows and keep rows (``[group][frame]``) for one sample; ``heat``/``keep`` are ``(D, T, H, W)``."""
    entering = _entering(keep)
    heat_rows = [[write_label(grey_dropped(overlay_heatmap(f, h, opts.alpha), e), f"g{g + 1} score")
                  for f, h, e in zip(frames, group, entering[g])] for g, group in enumerate(heat)]
    keep_rows = [[write_label(grey_dropped(f, k), f"g{g + 1} keep {ratios[g]:.2f}") for f, k in zip(frames, group)]
                 for g, group in enumerate(keep)]
    return heat_rows, keep_rows


def _summary(path: str, logits: Tensor, ratios: Sequence[float], keep_grid: Tensor,
             names: Sequence[str]) -> dict[str, Any]:
    """The json summary of one input: top-5 predictions, keep ratio per group, keep masks on the patch grid."""
    probs = logits.softmax(-1)
    top = probs.topk(min(5, probs.numel()))
    return {
        "input": path,
        "predictions": [{"class": names[int(i)], "id": int(i), "score": float(p)}
                        for p, i in zip(top.values, top.indices)],
        "keep_ratio": [float(r) for r in ratios],
        "keep_grid": keep_grid.int().tolist(),  # (D, T, h, w), 1 = patch still present after group j
    }


def _figure_data(frames: np.ndarray, heat: np.ndarray, keep: np.ndarray, summary: dict[str, Any],
                 frame_indices: Sequence[int] | None, weights: str, opts: VisOptions) -> FigureData:
    """What the labelled figure shows: panels, column labels, the top prediction and the weights in the title."""
    top = summary["predictions"][0]
    labels = [f"frame {i}" for i in frame_indices] if frame_indices else ["image"] * len(frames)
    return FigureData(frames, heat, keep, summary["keep_ratio"], labels, f"{top['class']} (p={top['score']:.2f})",
                      weights, opts.threshold, os.path.basename(summary["input"]), opts.alpha)


@torch.no_grad()
def visualize_input(model: nn.Module, x: Tensor, spec: ViewSpec, names: Sequence[str], out_stem: str,
                    opts: VisOptions, source: str = "", weights: str = "",
                    frame_indices: Sequence[int] | None = None) -> dict[str, Any]:
    """Run the model on one preprocessed input and write its figure, PNGs, animation and json (see module doc).

    Args:
        weights: which weights ``model`` holds (``describe_weights``), written into the figure's title.
        frame_indices: the video frames ``x`` holds (their labels in the figure); None for images.
    """
    device = next(model.parameters()).device
    out = model(x.unsqueeze(0).to(device), return_policy=True)
    size = x.shape[-2:]
    heat = policy_heatmaps(out.scores, out.grid, size, opts.upsample)[0].clamp(0, 1).cpu().numpy()
    keep = keep_masks(out.keep, out.grid, size)[0].cpu().numpy()
    ratios = [float(k[0].float().mean()) for k in out.keep]
    frames = to_uint8_frames(x, spec.mean, spec.std)
    keep_grid = torch.stack([rearrange(k[0], "(t h w) -> t h w", t=out.grid[0], h=out.grid[1], w=out.grid[2])
                             for k in out.keep]).cpu()
    summary = _summary(source, out.logits[0].float().cpu(), ratios, keep_grid, names)
    data = _figure_data(frames, heat, keep, summary, frame_indices, weights, opts)
    heat_rows, keep_rows = _panels(frames, heat, keep, ratios, opts)
    files: dict[str, str | None] = {
        "figure": save_png(figure_to_array(heatmap_figure(data)), f"{out_stem}_figure.png"),
        "heatmap": save_png(tile([list(frames)] + heat_rows), f"{out_stem}_heatmap.png"),
        "keep": save_png(tile([list(frames)] + keep_rows), f"{out_stem}_keep.png")}
    if spec.is_video:
        files["animation"] = save_animation(animation_frames(data), out_stem, opts.animation, opts.fps)
    summary["weights"] = weights
    summary["files"] = {k: v for k, v in files.items() if v}
    save_json(summary, f"{out_stem}.json")
    return summary

