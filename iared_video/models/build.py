"""Model registry and ``build_model(cfg)``: the one place models read the config."""

from __future__ import annotations

from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch import nn

from iared_video.models.backbones import TimeSformer, TimmViT
from iared_video.models.dynamicvit import DynamicViT, GumbelIARED, GumbelInterpreterPolicy
from iared_video.models.iared import IARED
from iared_video.models.policies import (FIXED_RATIO_POLICIES, DropPolicy, InterpreterPolicy, NoDropPolicy,
                                         fixed_ratio_policy)
from iared_video.models.weights import load_pretrained

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = "Backbones by MODEL.MODEL_NAME; each builder takes the cfg and returns an nn.Module."

__all__ = ["MODEL_REGISTRY", "build_model", "build_backbone", "build_policy"]


@MODEL_REGISTRY.register()
def timesformer(cfg: CfgNode) -> nn.Module:
    m = cfg.MODEL
    return TimeSformer(num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, num_frames=cfg.DATA.NUM_FRAMES,
                       patch_size=m.PATCH_SIZE, in_chans=cfg.DATA.INPUT_CHANNEL_NUM, embed_dim=m.EMBED_DIM,
                       depth=m.DEPTH, num_heads=m.NUM_HEADS, mlp_ratio=m.MLP_RATIO, drop_rate=m.DROPOUT_RATE,
                       drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD,
                       time_embed_std=m.TIME_EMBED_INIT_STD, attention_type=m.ATTENTION_TYPE)


@MODEL_REGISTRY.register()
def deit(cfg: CfgNode) -> nn.Module:
    m = cfg.MODEL
    return TimmViT(m.ARCH, num_classes=m.NUM_CLASSES, img_size=cfg.DATA.TRAIN_CROP_SIZE, drop_rate=m.DROPOUT_RATE,
                   drop_path_rate=m.DROP_PATH_RATE, pos_embed_std=m.POS_EMBED_INIT_STD)


def build_backbone(cfg: CfgNode) -> nn.Module:
    """The backbone named by ``MODEL.MODEL_NAME``."""
    return MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME)(cfg)


def build_policy(cfg: CfgNode, dim: int) -> DropPolicy:
    """The drop policy named by ``IARED.POLICY`` for tokens of width ``dim``."""
    p = cfg.IARED
    if p.POLICY == "interpreter" and p.GUMBEL:
        return GumbelInterpreterPolicy(dim, p.NUM_GROUPS, p.THRESHOLD, p.INTERPRETER_HEADS, p.INTERPRETER_DIM,
                                       p.FIRST_DROP_GROUP - 1, tau=p.GUMBEL_TAU)
    if p.POLICY == "interpreter":
        return InterpreterPolicy(dim, p.NUM_GROUPS, p.THRESHOLD, p.INTERPRETER_HEADS, p.INTERPRETER_DIM,
                                 p.FIRST_DROP_GROUP - 1)
    if p.POLICY in FIXED_RATIO_POLICIES:
        return fixed_ratio_policy(p.POLICY, p.DROP_RATIO, p.ATTENTION_BLOCK)
    return NoDropPolicy()


def build_model(cfg: CfgNode) -> nn.Module:
    """Backbone + policy as an ``IARED`` module (``DynamicViT`` for ``IARED.POLICY dynamicvit``): ``model(x)``
    gives logits, ``model(x, return_policy=True)`` a ``PolicyOutput``."""
    backbone = build_backbone(cfg)
    if cfg.IARED.POLICY == "dynamicvit":
        d = cfg.DYNAMICVIT
        model = DynamicViT(backbone, d.PRUNE_LOCATIONS, d.KEEP_RATE, d.GUMBEL_TAU)
    else:
        wrapper = GumbelIARED if cfg.IARED.GUMBEL else IARED
        model = wrapper(backbone, build_policy(cfg, backbone.embed_dim), cfg.IARED.NUM_GROUPS)
    if cfg.MODEL.PRETRAINED:
        load_pretrained(model, cfg.MODEL.PRETRAINED)
    return model
