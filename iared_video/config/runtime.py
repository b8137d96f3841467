"""What a validated config implies for the run: video or image input, and the device.

The one place these are decided; every stage, tool and experiment asks here instead of comparing
``MODEL.MODEL_NAME`` or ``DEVICE`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iared_video.config.choices import VIDEO_MODELS

if TYPE_CHECKING:
    import torch

__all__ = ["is_video", "resolve_device", "device_of"]


def is_video(cfg: Any) -> bool:
    """True when ``cfg``'s model takes clips ``(C, T, H, W)`` (TimeSformer), False for images ``(C, H, W)``."""
    return cfg.MODEL.MODEL_NAME in VIDEO_MODELS


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"cpu"``: the CPU; ``"cuda"``: GPU ``local_rank``; ``"auto"``: that GPU when there is one, else the CPU."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def device_of(cfg: Any, local_rank: int = 0) -> torch.device:
    """The device ``cfg.DEVICE`` selects for this process (see ``resolve_device``)."""
    return resolve_device(cfg.DEVICE, local_rank)
