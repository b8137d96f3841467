"""ViT shapes by ``MODEL.ARCH`` name: the project's own small shapes, and depth/patch of timm names, without
building a model (config validation reads them; a model is built only when a run starts)."""

from __future__ import annotations

import difflib
import re

__all__ = ["PROJECT_ARCHS", "resolve_arch", "is_known_arch", "arch_depth_and_patch", "nearest_archs"]

#: name -> (timm architecture it derives from, shape overrides). Video configs that inflate one of these into a
#: TimeSformer repeat its shape in ``MODEL.EMBED_DIM`` / ``DEPTH`` / ``NUM_HEADS`` / ``MLP_RATIO``.
PROJECT_ARCHS: dict[str, tuple[str, dict]] = {
    # 96-wide, 6 blocks, 3 heads of 32: the embedded pre-trained backbone (weights/, datasets/SYNTHETIC.md).
    "vit_micro_patch16": ("vit_tiny_patch16_224", {"embed_dim": 96, "depth": 6, "num_heads": 3, "mlp_ratio": 2.0}),
}

#: (depth, patch) of timm names whose shape the name does not spell: timm's small test models.
_NAMED_SHAPES: dict[str, tuple[int, int]] = {"test_vit": (6, 16), "test_vit2": (8, 16), "test_vit3": (9, 16)}
#: Depth of the standard ViT/DeiT sizes (Dosovitskiy et al. Table 1; DeiT and DeiT III use the same).
_DEPTH_OF_SIZE = {"tiny": 12, "small": 12, "medium": 12, "base": 12, "large": 24, "huge": 32, "giant": 40}
#: ``vit_small_patch16_224``, ``deit_base_distilled_patch16_384``, ``deit3_large_patch16_224.fb_in22k_ft_in1k``.
_STANDARD_NAME = re.compile(r"^(?:vit|deit3?)_(?P<size>[a-z]+)_(?:distilled_)?patch(?P<patch>\d+)_\d+(?:\.[\w.]+)?$")


def resolve_arch(arch: str) -> tuple[str, dict]:
    """``(timm architecture, keyword overrides)`` for ``arch``: a project shape, or a timm name as it is."""
    return PROJECT_ARCHS.get(arch, (arch, {}))


def is_known_arch(arch: str) -> bool:
    """A project shape or a name in timm's registry (``timm.is_model``: a lookup, nothing is built)."""
    import timm

    return arch in PROJECT_ARCHS or timm.is_model(arch)


def nearest_archs(arch: str, n: int = 3) -> list[str]:
    """The ``n`` project or timm ViT/DeiT names closest to ``arch`` (for the error message)."""
    import timm

    names = list(PROJECT_ARCHS) + timm.list_models("*vit*") + timm.list_models("deit*")
    return difflib.get_close_matches(arch, names, n=n)


def arch_depth_and_patch(arch: str) -> tuple[int, int] | None:
    """``(depth, patch size)`` of ``arch`` from the tables and the standard name pattern, None when neither says."""
    base, shape = resolve_arch(arch)
    known = _NAMED_SHAPES.get(base)
    match = _STANDARD_NAME.match(base)
    if known is None and match is not None and match["size"] in _DEPTH_OF_SIZE:
        known = (_DEPTH_OF_SIZE[match["size"]], int(match["patch"]))
    if known is None:
        return None
    return int(shape.get("depth", known[0])), int(shape.get("patch_size", known[1]))
