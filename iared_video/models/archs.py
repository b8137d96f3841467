"""Small ViT shapes of the project's own pre-training, usable as ``MODEL.ARCH`` beside every timm name."""

from __future__ import annotations

__all__ = ["PROJECT_ARCHS", "resolve_arch"]

#: name -> (timm architecture it derives from, shape overrides). Video configs that inflate one of these into a
#: TimeSformer repeat its shape in ``MODEL.EMBED_DIM`` / ``DEPTH`` / ``NUM_HEADS`` / ``MLP_RATIO``.
PROJECT_ARCHS: dict[str, tuple[str, dict]] = {
    # 96-wide, 6 blocks, 3 heads of 32: the embedded pre-trained backbone (weights/, docs/datasets/SYNTHETIC.md).
    "vit_micro_patch16": ("vit_tiny_patch16_224", {"embed_dim": 96, "depth": 6, "num_heads": 3, "mlp_ratio": 2.0}),
}


def resolve_arch(arch: str) -> tuple[str, dict]:
    """``(timm architecture, keyword overrides)`` for ``arch``: a project shape, or a timm name as it is."""
    return PROJECT_ARCHS.get(arch, (arch, {}))
