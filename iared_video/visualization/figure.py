"""Labelled heatmap figures (Matplotlib): the input beside its score overlays, one shared colour bar.

For a clip of ``T`` frames seen by ``D`` groups the panels are: the input; per group j the input
with group j's informative scores as a translucent colormap, the patches dropped by earlier
groups painted flat grey (they get no score); and the input with every patch the model dropped
painted grey ("kept"). Two orientations of the same grid:

* ``T == 1`` (an image, or one step of a video animation): one row, a column per panel, the
  column titles name the panel (group, keep ratio after it), the row label names the frame;
* ``T > 1``: a column per frame (titled with its frame index), a row per panel (labelled with
  the group and its keep ratio).

The colour bar on the right (``COLORBAR_LABEL``) marks the drop threshold when there is one, a
footnote says what grey means, and the title holds the prediction and the weights used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from iared_video.visualization.overlay import grey_dropped, overlay_heatmap

__all__ = ["COLORBAR_LABEL", "COLORBAR_AXES", "FigureData", "panel_labels", "heatmap_figure", "figure_to_array",
           "animation_frames"]

COLORBAR_LABEL = "informative score"
COLORBAR_AXES = "colorbar"  # the label (``Axes.get_label``) of the colour bar's axes; panels are "panel <p> <t>"
_PANEL_INCHES = 1.9
_BAR_INCHES, _LEFT_INCHES, _RIGHT_INCHES = 0.14, 0.55, 0.75
_TOP_INCHES, _BOTTOM_INCHES = 1.0, 0.4


@dataclass
class FigureData:
    """What one heatmap figure shows.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` input frames (as the model saw them).
        heat: ``(D, T, H, W)`` informative scores in ``[0, 1]`` per group.
        keep: ``(D, T, H, W)`` bool, pixel's patch still present after group j.
        keep_ratios: fraction of patch tokens present after each group.
        frame_labels: one label per frame (``"frame 12"``; ``"image"`` for images).
        prediction: e.g. ``"ride (p=0.41)"``.
        weights: which weights the model holds (file + sha256, or random initialisation).
        threshold: the drop threshold on the scores, if the policy has one.
        source: the input's name, for the title.
        alpha: opacity of the score colormap over the input.
        cmap: Matplotlib colormap of the scores (and of the colour bar).
    """

    frames: np.ndarray
    heat: np.ndarray
    keep: np.ndarray
    keep_ratios: Sequence[float]
    frame_labels: Sequence[str]
    prediction: str = ""
    weights: str = ""
    threshold: float | None = None
    source: str = ""
    alpha: float = 0.5
    cmap: str = "jet"

    def frame(self, t: int) -> FigureData:
        """The same figure restricted to frame ``t`` (one step of an animation)."""
        return replace(self, frames=self.frames[t:t + 1], heat=self.heat[:, t:t + 1], keep=self.keep[:, t:t + 1],
                       frame_labels=[self.frame_labels[t]])


def panel_labels(keep_ratios: Sequence[float]) -> list[str]:
    """Names of the panels: the input, each group's scores (with the keep ratio after it), the kept patches."""
    groups = [f"group {j + 1} scores\nkeeps {r:.0%}" for j, r in enumerate(keep_ratios)]
    final = keep_ratios[-1] if len(keep_ratios) else 1.0
    return ["input", *groups, f"kept patches\n{final:.0%} of all"]


def _panel_images(data: FigureData, t: int) -> list[np.ndarray]:
    """The panels of frame ``t``: input, one overlay per group (grey: dropped earlier), kept patches."""
    frame, panels = data.frames[t], [data.frames[t]]
    present = np.ones(frame.shape[:2], bool)
    for j in range(data.heat.shape[0]):
        panels.append(grey_dropped(overlay_heatmap(frame, data.heat[j, t], data.alpha, data.cmap), present))
        present = data.keep[j, t].astype(bool)
    panels.append(grey_dropped(frame, present))
    return panels


def _layout(num_frames: int, num_panels: int) -> tuple[int, int]:
    """(rows, columns) of the panel grid: one row for a single frame, else a row per panel."""
    return (1, num_panels) if num_frames == 1 else (num_panels, num_frames)


def _new_figure(rows: int, cols: int) -> tuple[Figure, list[list[Axes]], Axes]:
    """A figure with a ``rows x cols`` grid of image axes and a colour-bar axis, fixed margins."""
    width = _LEFT_INCHES + cols * _PANEL_INCHES + _RIGHT_INCHES + _BAR_INCHES
    height = _TOP_INCHES + rows * _PANEL_INCHES + _BOTTOM_INCHES
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.0] * cols + [_BAR_INCHES / _PANEL_INCHES],
                            left=_LEFT_INCHES / width, right=1 - _RIGHT_INCHES / width, wspace=0.06, hspace=0.08,
                            top=1 - _TOP_INCHES / height,
                            bottom=_BOTTOM_INCHES / height)
    axes = [[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(rows)]
    bar_rows = slice(1, rows - 1) if rows > 2 else slice(0, rows)
    return fig, axes, fig.add_subplot(grid[bar_rows, cols], label=COLORBAR_AXES)


def _draw_panels(axes: list[list[Axes]], data: FigureData, labels: list[str]) -> None:
    """Show the panels and label every row and column."""
    single = data.frames.shape[0] == 1
    for t in range(data.frames.shape[0]):
        for p, image in enumerate(_panel_images(data, t)):
            ax = axes[0][p] if single else axes[p][t]
            ax.set_label(f"panel {p} {t}")
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if single:
                ax.set_title(labels[p], fontsize=9)
            elif p == 0:
                ax.set_title(data.frame_labels[t], fontsize=9)
    for r, row in enumerate(axes):
        row[0].set_ylabel(data.frame_labels[0] if single else labels[r], fontsize=9)


def _draw_colorbar(fig: Figure, cax: Axes, data: FigureData) -> None:
    """One colour bar for every overlay, the threshold drawn on it."""
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[data.cmap]), cax=cax)
    bar.set_label(COLORBAR_LABEL, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    if data.threshold is not None:
        bar.ax.axhline(data.threshold, color="white", linewidth=3.0)
        bar.ax.axhline(data.threshold, color="black", linewidth=1.5, linestyle=(0, (2, 1)))


def _titles(fig: Figure, data: FigureData) -> None:
    """The title (input, prediction, weights) and the footnote saying what colour and grey mean."""
    head = " · ".join(x for x in (data.source, f"predicted {data.prediction}" if data.prediction else "") if x)
    fig.suptitle(head + (f"\nweights: {data.weights}" if data.weights else ""), fontsize=10)
    notes = ["colour: score of a patch entering the group", "grey: dropped earlier"]
    if data.threshold is not None:
        notes.append(f"dashed: threshold {data.threshold:.2f}")
    fig.text(0.5, 0.01, " · ".join(notes), ha="center", va="bottom", fontsize=8, color="0.25", wrap=True)


def heatmap_figure(data: FigureData) -> Figure:
    """The labelled figure of ``data`` (see the module docstring); a pyplot-free ``Figure`` with an Agg canvas."""
    labels = panel_labels(data.keep_ratios)
    rows, cols = _layout(data.frames.shape[0], len(labels))
    fig, axes, cax = _new_figure(rows, cols)
    _draw_panels(axes, data, labels)
    _draw_colorbar(fig, cax, data)
    _titles(fig, data)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to a uint8 ``(H, W, 3)`` RGB array (its canvas size, no cropping)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def animation_frames(data: FigureData) -> list[np.ndarray]:
    """One rendered single-frame figure per frame (same size each), for GIF/MP4 writers."""
    return [figure_to_array(heatmap_figure(data.frame(t))) for t in range(data.frames.shape[0])]
