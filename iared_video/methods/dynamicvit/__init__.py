"""DynamicViT: the method (``method.py``), its model and prediction modules (``model.py``), its losses."""

from iared_video.methods.dynamicvit.method import DynamicViTMethod, dynamicvit_step

__all__ = ["DynamicViTMethod", "dynamicvit_step"]
