"""Config loading: yaml over defaults, ``KEY VALUE`` opts last, one validation pass."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import yaml
from fvcore.common.config import CfgNode

from iared_video.config.archs import arch_depth_and_patch, is_known_arch, nearest_archs, resolve_arch
from iared_video.config.choices import CHOICES, LIST_CHOICES
from iared_video.config.defaults import FORMER_KEY_NAMES, former_key_errors, get_defaults
from iared_video.config.runtime import device_of, is_video, resolve_device
from iared_video.utils.cli import UserError

__all__ = ["ConfigError", "get_cfg", "load_config", "validate", "flat_keys", "nearest", "ConfigCheck", "is_video",
           "device_of", "resolve_device", "model_depth_and_patch", "choice_errors", "former_key_errors"]

class ConfigError(UserError, ValueError):
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
    former = former_key_errors(updates)
    errors = [f"{e} (in {source})" for e in former]
    errors += _unknown_key_errors([k for k in updates if k not in FORMER_KEY_NAMES], list(defaults), source)
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
    """Depth and patch size of the configured backbone, from the tables of ``config.archs`` (nothing is built).

    Only a timm name the tables do not cover (neither a standard ``vit_<size>_patch<p>_<res>`` name nor a listed
    one) is instantiated, on the meta device (no weights, no memory), to read its shape.
    """
    shape = _known_depth_and_patch(cfg)
    if shape is not None:
        return shape
    import timm
    import torch
    from timm.models.vision_transformer import VisionTransformer


    base, overrides = resolve_arch(cfg.MODEL.ARCH)
    with torch.device("meta"):
        net = cast(VisionTransformer, timm.create_model(base, pretrained=False, **overrides))
    return len(net.blocks), net.patch_embed.patch_size[0]


def _known_depth_and_patch(cfg: CfgNode) -> tuple[int, int] | None:
    """Depth and patch size from the config (TimeSformer) or the arch tables (``config.archs``); no model built."""
    if is_video(cfg):
        return cfg.MODEL.DEPTH, cfg.MODEL.PATCH_SIZE
    return arch_depth_and_patch(cfg.MODEL.ARCH)


def _arch_errors(cfg: CfgNode) -> list[str]:
    """``MODEL.ARCH`` of an image model must be a project shape or a timm name (looked up, not built)."""
    if is_video(cfg):
        return []
    if is_known_arch(cfg.MODEL.ARCH):
        return []
    return [f"MODEL.ARCH {cfg.MODEL.ARCH!r} is not a timm model or a project shape; nearest: "
            f"{nearest_archs(cfg.MODEL.ARCH)}"]


def choice_errors(flat: dict[str, Any], choices: dict[str, tuple] = CHOICES,
                  list_choices: dict[str, tuple] = LIST_CHOICES) -> list[str]:
    """Every choice-valued key (and every item of a list-valued one) outside its values, with the nearest."""
    errors = []
    for key, options in choices.items():
        if flat[key] not in options:
            errors.append(f"{key} must be one of {list(options)}, got {flat[key]!r}{nearest(flat[key], options)}")
    for key, options in list_choices.items():
        for item in flat[key]:
            if item not in options:
                errors.append(f"{key} items must be in {list(options)}, got {item!r}{nearest(item, options)}")
    return errors


def nearest(value: Any, options: Sequence[Any]) -> str:
    """``"; nearest: x"`` for a string close to one of string ``options``, else ""."""
    names = [o for o in options if isinstance(o, str)]
    near = difflib.get_close_matches(value, names, n=2, cutoff=0.5) if isinstance(value, str) else []
    return f"; nearest: {', '.join(repr(n) for n in near)}" if near else ""


#: ``check(cfg, depth)``: further problems of a config, asked after the schema (the methods' checks).
ConfigCheck = Callable[[CfgNode, int], list[str]]


def validate(cfg: CfgNode, checks: Sequence[ConfigCheck] = ()) -> None:
    """Check choices, ranges and cross-key constraints, then ``checks``; raise one ConfigError listing all problems.

    The method keys (``METHOD.NAME``, ``BENCHMARK.METHODS_AT_KEEP``) and each method's section are checked by
    the ``checks`` the entry point passes (``iared_video.methods.load_config``); this pass knows no method.
    """
    flat = flat_keys(cfg)
    errors = choice_errors(flat)
    if not 0.0 <= cfg.VISUALIZE.ALPHA <= 1.0:
        errors.append(f"VISUALIZE.ALPHA must lie in [0, 1], got {cfg.VISUALIZE.ALPHA}")
    for key in ("IARED.NUM_GROUPS", "DATA.NUM_FRAMES", "TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "NUM_GPUS",
                "NUM_SHARDS", "TEST.NUM_ENSEMBLE_VIEWS", "MODEL.NUM_CLASSES"):
        if flat[key] < 1:
            errors.append(f"{key} must be >= 1, got {flat[key]}")
    if cfg.MODEL.EMBED_DIM % cfg.MODEL.NUM_HEADS:
        errors.append(f"MODEL.EMBED_DIM {cfg.MODEL.EMBED_DIM} is not divisible by "
                      f"MODEL.NUM_HEADS {cfg.MODEL.NUM_HEADS}")
    errors += _arch_errors(cfg)
    if errors:  # the cross-key checks below need sane basic values
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    depth, patch = model_depth_and_patch(cfg)
    errors += _shape_errors(flat, patch)
    errors += _divided_errors(cfg)
    errors += _stem_errors(cfg, patch)
    for check in checks:
        errors += check(cfg, depth)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _shape_errors(flat: dict[str, Any], patch: int) -> list[str]:
    """Crop sizes against the backbone's patch size (each method checks its own keys against the depth)."""
    errors = []
    for key in ("DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE"):
        if flat[key] % patch:
            errors.append(f"{key}={flat[key]} is not divisible by the patch size {patch}")
    return errors


def _stem_errors(cfg: CfgNode, patch: int) -> list[str]:
    """``MODEL.STEM_CHANNELS``: a TimeSformer's, positive widths, ``2^len`` dividing the patch, an odd window."""
    widths = list(cfg.MODEL.STEM_CHANNELS)
    if not widths:
        return []
    if not is_video(cfg):
        return [f"MODEL.STEM_CHANNELS needs MODEL.MODEL_NAME timesformer, got {cfg.MODEL.MODEL_NAME!r}"]
    errors = []
    if not all(isinstance(w, int) and w > 0 for w in widths) or patch % 2 ** len(widths):
        errors.append(f"MODEL.STEM_CHANNELS must be positive integers whose {len(widths)} stride-2 stages divide "
                      f"the patch size {patch} (2^{len(widths)}), got {widths}")
    if cfg.MODEL.PATCH_FRAMES % 2 == 0:
        errors.append(f"MODEL.STEM_CHANNELS needs an odd MODEL.PATCH_FRAMES (a centred window), got "
                      f"{cfg.MODEL.PATCH_FRAMES}")
    return errors


def _divided_errors(cfg: CfgNode) -> list[str]:
    """Settings that do not exist for MODEL.ATTENTION_TYPE divided_space_time (methods check their own)."""
    if cfg.MODEL.ATTENTION_TYPE == "divided_space_time" and not is_video(cfg):
        return [f"MODEL.ATTENTION_TYPE divided_space_time needs MODEL.MODEL_NAME timesformer, got "
                f"{cfg.MODEL.MODEL_NAME!r}"]
    return []


def load_config(path: str | None = None, opts: Sequence[str] | None = None,
                checks: Sequence[ConfigCheck] = ()) -> CfgNode:
    """Merge ``path`` (yaml) and then ``opts`` over the defaults, validate once, freeze.

    Args:
        path: a yaml file, or None for the defaults alone.
        opts: flat ``["KEY", "VALUE", ...]`` overrides, values parsed as Python literals.
        checks: further checks after the schema's (``iared_video.methods.load_config`` passes the methods').

    Raises:
        ConfigError: unknown keys (with the nearest valid names), wrong types or impossible settings.
    """
    cfg = get_cfg()
    if path:
        _merge(cfg, _read_yaml(path), path)
    if opts:
        _merge(cfg, _opts_to_dict(opts), "command-line options")
    validate(cfg, checks)
    cfg.freeze()
    return cfg
