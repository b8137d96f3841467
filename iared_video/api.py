"""The Python way in: a model from a config in one call, its keep masks and heatmaps, any timm ViT with a method.

    import iared_video.api as iv

    model = iv.create_model("Synthetic/tsf_tiny_iared")          # a config under configs/, or a yaml path
    exp = iv.explain(model, clip)                                 # logits, scores, keep masks, heatmaps
    vit = iv.wrap_vit(timm.create_model("deit_small_patch16_224"), "tome", r=8)

The functions are thin: configs load through ``iared_video.methods.load_config`` (the schema and every method's
checks), models build through ``iared_video.methods.build_model`` and weights load through
``iared_video.models.weights.load_pretrained``, exactly as ``tools/run_net.py`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fvcore.common.config import CfgNode
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from iared_video.config import ConfigError, get_cfg, nearest
from iared_video.config import load_config as load_schema_config
from iared_video.interpret.heatmap import keep_masks, policy_heatmaps
from iared_video.methods import build_model, config_errors, get_method, load_config, method_names
from iared_video.models.backbones import TimmViT
from iared_video.models.weights import load_pretrained

__all__ = ["CONFIG_DIR", "list_configs", "get_config", "create_model", "Explanation", "explain", "wrap_vit"]

#: The repository's ``configs/`` folder: ``get_config("K400/iared_tsf")`` reads ``configs/K400/iared_tsf.yaml``.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

Options = Sequence[str] | Mapping[str, Any] | None


def list_configs() -> list[str]:
    """Names of the shipped configs (``"K400/iared_tsf"``, ``"Synthetic/tsf_tiny_iared"``, ...)."""
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))


def _opts(options: Options) -> list[str]:
    """``KEY VALUE`` pairs from a flat list or a ``{"KEY": value}`` mapping."""
    if options is None:
        return []
    if isinstance(options, Mapping):
        return [str(item) for key, value in options.items() for item in (key, repr(value))]
    return [str(o) for o in options]


def get_config(config: str, options: Options = None) -> CfgNode:
    """Load a config by name (``list_configs``) or yaml path, ``options`` merged last, validated, frozen.

    Raises:
        ConfigError: an unknown name (with the shipped names) or key, a wrong type, an impossible setting.
    """
    path = Path(config)
    if not path.suffix:
        path = CONFIG_DIR / f"{config}.yaml"
        if not path.is_file():
            raise ConfigError(f"no config named {config!r}{nearest(config, list_configs())} "
                              "(iared_video.api.list_configs() lists them)")
    return load_config(str(path), _opts(options))


def create_model(config: str | CfgNode, weights: str | None = None, options: Options = None,
                 train: bool = False) -> nn.Module:
    """The model a config describes, with ``weights`` (a local checkpoint of any supported format) loaded.

    Args:
        config: a config name, a yaml path, or a loaded ``CfgNode``.
        weights: a checkpoint file (this project's, official TimeSformer ``.pyth``, DeiT/timm ``.pth``); None keeps
            the config's ``MODEL.PRETRAINED`` (or a random initialisation).
        options: ``KEY VALUE`` overrides (list or mapping), e.g. ``{"IARED.THRESHOLD": 0.6}``.
        train: leave the model in training mode (default: ``eval()``).
    """
    cfg = config if isinstance(config, CfgNode) else get_config(config, options)
    model = build_model(cfg)
    if weights:
        load_pretrained(model, weights)
    return model.train(train)


@dataclass
class Explanation:
    """What one forward shows.

    Attributes:
        logits: ``(B, K)``.
        scores: D tensors ``(B, N)``: each group's informative scores (0 where dropped earlier).
        keep: D bool tensors ``(B, N)``: the patch tokens present after each group.
        heatmaps: ``(B, D, T, H, W)`` scores upsampled to the input (images: ``T = 1``).
        masks: ``(B, D, T, H, W)`` bool, the kept patches at the input resolution.
    """

    logits: Tensor
    scores: list[Tensor]
    keep: list[Tensor]
    heatmaps: Tensor
    masks: Tensor

    @property
    def keep_ratio(self) -> Tensor:
        """``(B,)`` share of the patch tokens present after the last group."""
        return self.keep[-1].float().mean(1)


@torch.no_grad()
def explain(model: nn.Module, x: Tensor, mode: str = "nearest") -> Explanation:
    """Run ``model`` on ``x`` (clips ``(B, C, T, H, W)`` or images ``(B, C, H, W)``) and map its scores to pixels.

    ``mode`` upsamples the patch scores (``"nearest"``: each patch paints its pixels; ``"bilinear"``: smooth).
    """
    out = model(x, return_policy=True)
    size = x.shape[-2:]
    return Explanation(out.logits, list(out.scores), list(out.keep), policy_heatmaps(out.scores, out.grid, size, mode),
                       keep_masks(out.keep, out.grid, size))


def wrap_vit(vit: VisionTransformer, method: str, options: Options = None, **settings: Any) -> nn.Module:
    """A timm ViT/DeiT of the user's (its weights, no copy) run by a token-reduction method.

    Args:
        vit: a timm ``VisionTransformer`` with class-token pooling and standard blocks.
        method: a registered name (``method_names()``: ``"tome"``, ``"evit"``, ``"iared"``, ...).
        options: further ``KEY VALUE`` overrides of any section.
        **settings: keys of the method's own config section in lower case, e.g. ``r=8`` for ``TOME.R``,
            ``keep_rate=0.7`` for ``EVIT.KEEP_RATE``, ``num_groups=3`` for ``IARED.NUM_GROUPS``.

    Raises:
        ConfigError: an unknown method or setting, or a setting the method cannot run with on this ViT.
    """
    if method not in method_names():
        raise ConfigError(f"unknown method {method!r}; registered: {method_names()}")
    nodes, defaults = get_method(method).config_nodes, get_cfg()
    opts = ["METHOD.NAME", method, "MODEL.MODEL_NAME", "deit", "MODEL.NUM_CLASSES", str(vit.num_classes)]
    for key, value in settings.items():  # the method's section that has the key (else its first: the error names it)
        node = next((n for n in nodes if key.upper() in defaults[n]), nodes[0] if nodes else "METHOD")
        opts += [f"{node}.{key.upper()}", repr(value)]
    cfg = load_schema_config(None, opts + _opts(options))  # the schema; the method's checks use this ViT's depth
    errors = config_errors(cfg, len(vit.blocks))
    if errors:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(errors))
    return get_method(method).build(cfg, TimmViT.from_timm(vit)).eval()

