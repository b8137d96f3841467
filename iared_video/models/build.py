"""Backbone registry and ``build_backbone(cfg)``: the one place models read the config.

The method that wraps the backbone is built by ``iared_video.methods.build_model``.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry

from iared_video.models.backbones import Backbone, TimeSformer, TimmViT

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = "Backbones by MODEL.MODEL_NAME; each builder takes the cfg and returns an nn.Module."

__all__ = ["MODEL_REGISTRY", "build_backbone"]


@MODEL_REGISTRY.register()
def timesformer(cfg: CfgNode) -> TimeSformer:
    m = cfg.MODEL
    return TimeSformer(num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, num_frames=cfg.DATA.NUM_FRAMES,
                       patch_size=m.PATCH_SIZE, in_chans=cfg.DATA.INPUT_CHANNEL_NUM, embed_dim=m.EMBED_DIM,
                       depth=m.DEPTH, num_heads=m.NUM_HEADS, mlp_ratio=m.MLP_RATIO, drop_rate=m.DROPOUT_RATE,
                       drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD,
                       time_embed_std=m.TIME_EMBED_INIT_STD, attention_type=m.ATTENTION_TYPE,
                       patch_frames=m.PATCH_FRAMES,
                       patch_inflation=m.PATCH_FRAMES_INFLATION, stem_channels=tuple(m.STEM_CHANNELS))


@MODEL_REGISTRY.register()
def deit(cfg: CfgNode) -> TimmViT:
    m = cfg.MODEL
    return TimmViT(m.ARCH, num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, drop_rate=m.DROPOUT_RATE,
                   drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD)


def build_backbone(cfg: CfgNode) -> Backbone:
    """The backbone named by ``MODEL.MODEL_NAME``."""
    return MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME)(cfg)
