"""iared_video: IA-RED^2 (interpretability-aware redundancy reduction) for video and image transformers."""

__version__ = "0.1.0"
