"""Config loading: yaml over defaults, ``KEY VALUE`` opts last, one validation pass."""

from __future__ import annotations

import ast
import difflib
from typing import Any, Iterable, Sequence

import yaml
from fvcore.common.config import CfgNode

from iared_video.config.defaults import get_defaults

__all__ = ["ConfigError", "get_cfg", "load_config", "validate", "flat_keys", "choices"]

# Keys whose value must be one of a fixed set (IARED.POLICY: one per registered method, see ``choices``).
CHOICES: dict[str, tuple] = {
    "MODEL.MODEL_NAME": ("timesformer", "deit"),
    "MODEL.ATTENTION_TYPE": ("joint_space_time", "divided_space_time"),
    "IARED.REWARD": ("square", "linear"),
    "IARED.REWARD_NORMALIZER": ("original", "entering"),
    "DYNAMICVIT.BACKBONE_LR_RULE": ("capped", "scaled"),
    "DATA.DATASET": ("kinetics", "imagenet"),
    "DATA.DECODING_BACKEND": ("decord", "pyav"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adam", "adamw"),
    "SOLVER.LR_POLICY": ("cosine", "constant"),
    "TEST.NUM_SPATIAL_CROPS": (1, 3),
    "DIST_BACKEND": ("auto", "nccl", "gloo"),
    "DEVICE": ("auto", "cpu", "cuda"),
    "LOG_LEVEL": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "VISUALIZE.UPSAMPLE": ("nearest", "bilinear"),
    "VISUALIZE.ANIMATION": ("gif", "mp4", "none"),
    "VISUALIZE.BINARIZE": ("mean", "fixed", "otsu"),
}


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found."""


def get_cfg() -> CfgNode:
    """Return a copy of the default config."""
    return get_defaults()


def flat_keys(node: CfgNode, prefix: str = "") -> dict[str, Any]:
    """Flatten a CfgNode (or dict) into {"A.B": value}."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_keys(value, name + "."))
        else:
            out[name] = value
    return out


def _unknown_key_errors(keys: Iterable[str], valid: Sequence[str], source: str) -> list[str]:
    errors = []
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
            hint = f"; nearest valid keys: {', '.join(near)}" if near else ""
            errors.append(f"unknown key {key!r} in {source}{hint}")
    return errors


def _parse_opt_value(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Coerce ``value`` to the type of ``default`` or raise ConfigError."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(
        f"{key} must be of type {type(default).__name__} (like the default {default!r}), "
        f"got {type(value).__name__} {value!r}"
    )


def _set(cfg: CfgNode, key: str, value: Any) -> None:
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _merge(cfg: CfgNode, updates: dict[str, Any], source: str) -> None:
    defaults = flat_keys(cfg)
    errors = _unknown_key_errors(updates, list(defaults), source)
    for key, value in updates.items():
        if key in defaults:
            try:
                _set(cfg, key, _coerce(key, value, defaults[key]))
            except ConfigError as exc:
                errors.append(f"{exc} (from {source})")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid yaml: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return flat_keys(data)


def _opts_to_dict(opts: Sequence[str]) -> dict[str, Any]:
    if len(opts) % 2:
        raise ConfigError(f"options must come as KEY VALUE pairs, got an odd count: {list(opts)}")
    return {opts[i]: _parse_opt_value(opts[i + 1]) for i in range(0, len(opts), 2)}


def model_depth_and_patch(cfg: CfgNode) -> tuple[int, int]:
    """Depth and patch size of the configured backbone (timm arch read on the meta device)."""
    if cfg.MODEL.MODEL_NAME == "timesformer":
        return cfg.MODEL.DEPTH, cfg.MODEL.PATCH_SIZE
    import timm
    import torch

    from iared_video.models.archs import resolve_arch

    base, shape = resolve_arch(cfg.MODEL.ARCH)
    try:
        with torch.device("meta"):
            net = timm.create_model(base, pretrained=False, **shape)
    except RuntimeError as exc:
        near = difflib.get_close_matches(cfg.MODEL.ARCH, timm.list_models("*vit*") + timm.list_models("deit*"), n=3)
        raise ConfigError(f"MODEL.ARCH {cfg.MODEL.ARCH!r} is not a timm model; nearest: {near}") from exc
    return len(net.blocks), net.patch_embed.patch_size[0]


def choices() -> dict[str, tuple]:
    """``CHOICES`` plus ``IARED.POLICY``: the values the method registry accepts."""
    from iared_video.methods import policy_choices

    return {**CHOICES, "IARED.POLICY": policy_choices()}


def validate(cfg: CfgNode) -> None:
    """Check choices, ranges and cross-key constraints; raise one ConfigError listing all problems."""
    flat = flat_keys(cfg)
    errors = [
        f"{key} must be one of {list(options)}, got {flat[key]!r}"
        for key, options in choices().items()
        if flat[key] not in options
    ]
    if not 0.0 < cfg.IARED.THRESHOLD < 1.0:
        errors.append(f"IARED.THRESHOLD must lie in (0, 1), got {cfg.IARED.THRESHOLD}")
    if not 0.0 <= cfg.VISUALIZE.ALPHA <= 1.0:
        errors.append(f"VISUALIZE.ALPHA must lie in [0, 1], got {cfg.VISUALIZE.ALPHA}")
    if not 0.0 <= cfg.IARED.DROP_RATIO < 1.0:
        errors.append(f"IARED.DROP_RATIO must lie in [0, 1), got {cfg.IARED.DROP_RATIO}")
    for key in ("IARED.NUM_GROUPS", "DATA.NUM_FRAMES", "TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "NUM_GPUS",
                "NUM_SHARDS", "TEST.NUM_ENSEMBLE_VIEWS", "MODEL.NUM_CLASSES"):
        if flat[key] < 1:
            errors.append(f"{key} must be >= 1, got {flat[key]}")
    if cfg.MODEL.EMBED_DIM % cfg.MODEL.NUM_HEADS:
        errors.append(f"MODEL.EMBED_DIM {cfg.MODEL.EMBED_DIM} is not divisible by MODEL.NUM_HEADS {cfg.MODEL.NUM_HEADS}")
    if errors:  # the cross-key checks below need sane basic values
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    depth, patch = model_depth_and_patch(cfg)
    if depth % cfg.IARED.NUM_GROUPS:
        errors.append(f"IARED.NUM_GROUPS={cfg.IARED.NUM_GROUPS} must divide the model depth {depth}")
    if not 1 <= cfg.IARED.FIRST_DROP_GROUP <= cfg.IARED.NUM_GROUPS:
        errors.append(f"IARED.FIRST_DROP_GROUP={cfg.IARED.FIRST_DROP_GROUP} must lie in [1, IARED.NUM_GROUPS="
                      f"{cfg.IARED.NUM_GROUPS}]")
    if not 0 <= cfg.IARED.ATTENTION_BLOCK < depth:
        errors.append(f"IARED.ATTENTION_BLOCK={cfg.IARED.ATTENTION_BLOCK} must index a block in [0, {depth})")
    for key in ("DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE"):
        if flat[key] % patch:
            errors.append(f"{key}={flat[key]} is not divisible by the patch size {patch}")
    errors += _divided_errors(cfg)
    errors += method_config_errors(cfg, depth)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _divided_errors(cfg: CfgNode) -> list[str]:
    """Settings that do not exist for MODEL.ATTENTION_TYPE divided_space_time (methods check their own)."""
    if cfg.MODEL.ATTENTION_TYPE == "divided_space_time" and cfg.MODEL.MODEL_NAME != "timesformer":
        return [f"MODEL.ATTENTION_TYPE divided_space_time needs MODEL.MODEL_NAME timesformer, got "
                f"{cfg.MODEL.MODEL_NAME!r}"]
    return []


def method_config_errors(cfg: CfgNode, depth: int) -> list[str]:
    """Each method's checks of its section (DYNAMICVIT.*, TOME.*, ...) and the selected method's needs."""
    from iared_video.methods import config_errors

    return config_errors(cfg, depth)


def load_config(path: str | None = None, opts: Sequence[str] | None = None) -> CfgNode:
    """Merge ``path`` (yaml) and then ``opts`` over the defaults, validate once, freeze.

    Args:
        path: a yaml file, or None for the defaults alone.
        opts: flat ``["KEY", "VALUE", ...]`` overrides, values parsed as Python literals.

    Raises:
        ConfigError: unknown keys (with the nearest valid names), wrong types or impossible settings.
    """
    cfg = get_cfg()
    if path:
        _merge(cfg, _read_yaml(path), path)
    if opts:
        _merge(cfg, _opts_to_dict(opts), "command-line options")
    validate(cfg)
    cfg.freeze()
    return cfg
