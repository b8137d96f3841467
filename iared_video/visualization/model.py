"""The model the visualiser shows and a description of its weights (file and sha256) for figure titles."""

from __future__ import annotations

import functools
import hashlib
import os

from torch import nn

from iared_video.config import device_of

__all__ = ["RANDOM_WEIGHTS", "describe_weights", "build_vis_model"]

RANDOM_WEIGHTS = "random initialisation — pass --checkpoint for meaningful heatmaps"


def _sha256(path: str) -> str:
    """Hex sha256 of a file (cached while its size and modification time stay the same)."""
    return _sha256_of(os.path.abspath(path), os.path.getsize(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime: float) -> str:
    """Hex sha256 of ``path``; ``size`` and ``mtime`` only key the cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_weights(cfg, short: bool = False) -> str:
    """Which weights ``build_vis_model(cfg)`` loads: each file (MODEL.PRETRAINED, TEST.CHECKPOINT_FILE_PATH)
    with its sha256 (``short``: file name and 12 hex digits), or ``RANDOM_WEIGHTS``."""
    files = [p for p in (cfg.MODEL.PRETRAINED, cfg.TEST.CHECKPOINT_FILE_PATH) if p and os.path.isfile(p)]
    if not files:
        return RANDOM_WEIGHTS
    parts = [f"{os.path.basename(p) if short else p} (sha256 {_sha256(p)[:12] if short else _sha256(p)})"
             for p in files]
    note = "" if cfg.TEST.CHECKPOINT_FILE_PATH else " — backbone only: pass --checkpoint for meaningful heatmaps"
    return " + ".join(parts) + note


def build_vis_model(cfg) -> nn.Module:
    """``build_model(cfg)`` (which loads MODEL.PRETRAINED) plus TEST.CHECKPOINT_FILE_PATH when set, in eval mode."""
    from iared_video.methods import build_model
    from iared_video.models.weights import load_pretrained

    model = build_model(cfg)
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        load_pretrained(model, cfg.TEST.CHECKPOINT_FILE_PATH)
    return model.to(device_of(cfg)).eval()
