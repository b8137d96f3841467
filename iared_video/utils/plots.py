"""Trade-off plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_series", "plot_measured_vs_ideal"]

logger = logging.getLogger(__name__)

Point = tuple[float, float]


def plot_series(series: Mapping[str, Sequence[Point]], xlabel: str, ylabel: str, path: str,
                title: str = "", labels: Mapping[str, Sequence[str]] | None = None) -> str:
    """One line with markers per method, points sorted by x; optional per-point text labels; saves a PNG.

    Args:
        series: method name -> (x, y) points (points with a None coordinate are skipped).
        xlabel, ylabel, title: axis labels and title.
        path: output PNG path (folders are created).
        labels: method name -> one annotation per point (same order as ``series``).
    """
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, points in series.items():
        texts = list((labels or {}).get(name, [""] * len(points)))
        kept = sorted((p[0], p[1], t) for p, t in zip(points, texts) if p[0] is not None and p[1] is not None)
        if not kept:
            continue
        ax.plot([k[0] for k in kept], [k[1] for k in kept], marker="o", label=name)
        for x, y, text in kept:
            if text:
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


def _save(fig: plt.Figure, path: str, dpi: int) -> str:
    """Write ``fig`` to ``path`` (folders created), close it, log and return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def plot_measured_vs_ideal(panels: Mapping[str, Mapping[str, Sequence[Point]]], path: str,
                           title: str = "", hollow: Mapping[str, Mapping[str, Sequence[bool]]] | None = None) -> str:
    """One scatter panel per model: each method's ``(ideal, measured)`` speed-ups over dense, the line where
    measured equals ideal and the line at 0.9 of it; saves a PNG.

    Args:
        panels: panel title -> method -> points (one per batch size).
        path: output PNG path (folders are created).
        hollow: panel -> method -> per point, whether to draw it hollow (the suite: batch 1).
    """
    cols = min(3, max(1, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    markers = "osD^v<>pXh*"
    names = sorted({m for panel in panels.values() for m in panel})
    for ax, (panel, series) in zip(axes.flat, panels.items()):
        top = max([max(p) for pts in series.values() for p in pts] + [1.0]) * 1.08
        ax.plot([0, top], [0, top], color="0.3", lw=1, label="measured = ideal")
        ax.plot([0, top], [0, 0.9 * top], color="0.6", lw=1, ls="--", label="0.9 x ideal")
        for name, pts in series.items():
            i = names.index(name)
            color = plt.get_cmap("tab10")(i % 10)
            empty = list((hollow or {}).get(panel, {}).get(name, [False] * len(pts)))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], s=30,
                       facecolors=["none" if e else color for e in empty], edgecolors=[color] * len(pts),
                       label=name)
        ax.set(xlim=(0.9, top), ylim=(0.5, top), xlabel="ideal speed-up (dense GMACs / GMACs)",
               ylabel="measured speed-up", title=panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=110)
