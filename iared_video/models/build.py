"""Model registry and ``build_model(cfg)``: the one place models read the config."""

from __future__ import annotations

from typing import cast

from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch import nn

from iared_video.models.backbones import Backbone, TimeSformer, TimmViT
from iared_video.models.weights import load_pretrained

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = "Backbones by MODEL.MODEL_NAME; each builder takes the cfg and returns an nn.Module."

__all__ = ["MODEL_REGISTRY", "build_model", "build_backbone", "build_policy"]


@MODEL_REGISTRY.register()
def timesformer(cfg: CfgNode) -> TimeSformer:
    m = cfg.MODEL
    return TimeSformer(num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, num_frames=cfg.DATA.NUM_FRAMES,
                       patch_size=m.PATCH_SIZE, in_chans=cfg.DATA.INPUT_CHANNEL_NUM, embed_dim=m.EMBED_DIM,
                       depth=m.DEPTH, num_heads=m.NUM_HEADS, mlp_ratio=m.MLP_RATIO, drop_rate=m.DROPOUT_RATE,
                       drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD,
                       time_embed_std=m.TIME_EMBED_INIT_STD, attention_type=m.ATTENTION_TYPE,
                       patch_frames=m.PATCH_FRAMES,
                       patch_inflation=m.PATCH_FRAMES_INFLATION)


@MODEL_REGISTRY.register()
def deit(cfg: CfgNode) -> TimmViT:
    m = cfg.MODEL
    return TimmViT(m.ARCH, num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, drop_rate=m.DROPOUT_RATE,
                   drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD)


def build_backbone(cfg: CfgNode) -> Backbone:
    """The backbone named by ``MODEL.MODEL_NAME``."""
    return MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME)(cfg)


def build_policy(cfg: CfgNode, dim: int) -> nn.Module:
    """The policy (or token reducer) of the method ``cfg`` selects, for tokens of width ``dim``: the method's
    ``build_policy`` where it has one, else the policy of the model it builds on a fresh backbone."""
    from iared_video.methods import method_for_cfg

    method = method_for_cfg(cfg)
    if hasattr(method, "build_policy"):
        return method.build_policy(cfg, dim)
    return cast(nn.Module, method.build(cfg, build_backbone(cfg)).policy)  # every wrapped model has one


def build_model(cfg: CfgNode) -> nn.Module:
    """Backbone wrapped by the method ``cfg`` selects (``IARED.POLICY``, see ``iared_video.methods``):
    ``model(x)`` gives logits, ``model(x, return_policy=True)`` a ``PolicyOutput``. ``MODEL.PRETRAINED``
    is loaded over the whole model."""
    from iared_video.methods import method_for_cfg

    model = method_for_cfg(cfg).build(cfg, build_backbone(cfg))
    if cfg.MODEL.PRETRAINED:
        load_pretrained(model, cfg.MODEL.PRETRAINED)
    return model
