"""Trade-off plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_series"]

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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
