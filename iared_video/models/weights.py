"""Load local checkpoints into a ``PolicyModel``.

Supported files (``torch.load(..., weights_only=True)``; nothing is downloaded):
    * official TimeSformer / PySlowFast ``.pyth``: ``{"model_state": {"model.<key>": ...}, ...}``;
    * DeiT ``.pth``: ``{"model": <timm state dict>, ...}``;
    * timm state dicts, bare or under ``"state_dict"``;
    * our own checkpoints: ``{"model_state": {"backbone.<key>"/"policy.<key>": ...}, ...}``;
    * any of these with DDP ``module.`` prefixes.

Backbone-only checkpoints are mapped under ``backbone.``. Shapes are adapted the
way TimeSformer initialises from an ImageNet ViT/DeiT: the positional embedding
is resampled to the model's patch grid (prefix positions kept), the temporal
embedding is zero-initialised when absent and linearly interpolated when the
frame count differs, a head with another class count is skipped, and
distillation token/head are dropped when the model has none, and an image
checkpoint loaded into a divided space-time TimeSformer starts each block's
``temporal_attn``/``temporal_norm1`` as a copy of its ``attn``/``norm1``. Every
such decision is logged and returned in a ``LoadReport``. A TimeSformer
checkpoint of the other attention type (divST files have ``temporal_attn`` /
``temporal_fc`` keys) is refused, naming ``MODEL.ATTENTION_TYPE``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from iared_video.models.backbones import Backbone
from iared_video.utils.cli import UserError

__all__ = ["CheckpointFileError", "CheckpointMismatchError", "LoadReport", "load_checkpoint_file",
           "extract_state_dict", "inflate_patch_weight", "load_pretrained"]

logger = logging.getLogger(__name__)

_CONTAINER_KEYS = ("model_state", "model", "state_dict")
_DISTILLATION_KEYS = ("dist_token", "head_dist.")
_LOAD_ERRORS = (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, IndexError,
                TypeError, AttributeError)
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_LISTED = 10
_DIVIDED_MARKERS = (".temporal_attn.", ".temporal_fc.", ".temporal_norm1.")  # keys only divST blocks have


class CheckpointFileError(UserError, RuntimeError):
    """A checkpoint file that cannot be read (empty, truncated, corrupt or not a checkpoint)."""


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint whose tensors do not fit the model; the message lists the offending keys and shapes."""


@dataclass
class LoadReport:
    """What ``load_pretrained`` did, key by key (model key names, i.e. ``backbone.*`` / ``policy.*``).

    Attributes:
        format: checkpoint format detected by ``extract_state_dict``.
        loaded: keys copied into the model (as is or adapted).
        missing: model keys the checkpoint does not provide (left at their values; ``time_embed`` zeroed).
        unexpected: checkpoint keys the model has no place for (including dropped distillation keys).
        reshaped: keys adapted to the model's shape (positional/temporal embedding).
        skipped_shape: checkpoint keys not loaded because their shape differs (e.g. head with another class count).
        notes: key -> why it was reshaped, skipped, dropped or initialised.
    """

    format: str = ""
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def _is_master() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _log(level: int, msg: str, *args: object) -> None:
    """Log on the master process; other ranks log at DEBUG only (no duplicated lines)."""
    logger.log(level if _is_master() else logging.DEBUG, msg, *args)


# ---------------------------------------------------------------------------
# Reading the file.
# ---------------------------------------------------------------------------
def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``torch.load(path, map_location="cpu", weights_only=True)``.

    ``argparse.Namespace`` (the ``args`` entry of DeiT checkpoints) is allowed; no other Python object is.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointFileError: the file is empty, truncated, corrupt, not a checkpoint, or not a dict.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointFileError(f"checkpoint path {path} is a directory, not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointFileError(f"cannot load checkpoint {path}: the file is empty (0 bytes)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        raise CheckpointFileError(f"cannot load checkpoint {path} ({size} bytes): {_diagnose(path, exc)}") from exc
    if not isinstance(ckpt, Mapping):
        raise CheckpointFileError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict of tensors")
    return dict(ckpt)


def _diagnose(path: str, exc: BaseException) -> str:
    """A one-line reason for a failed ``torch.load``."""
    with open(path, "rb") as f:
        head = f.read(4)
    detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else '(no message)'}"
    if head == _ZIP_MAGIC and not zipfile.is_zipfile(path):
        return f"the file is truncated or corrupt (torch zip archive without its end record) [{detail}]"
    if isinstance(exc, EOFError):
        return f"the file ends unexpectedly (truncated) [{detail}]"
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if unsupported:
        return (f"it holds the Python object {unsupported.group(1)}, which weights_only loading refuses; "
                "re-save the state dict alone")
    if head != _ZIP_MAGIC and not head.startswith(b"\x80"):
        return f"not a PyTorch checkpoint (neither a torch zip archive nor a pickle) [{detail}]"
    return f"the file is corrupt or not a PyTorch checkpoint [{detail}]"


# ---------------------------------------------------------------------------
# Finding the state dict.
# ---------------------------------------------------------------------------
def extract_state_dict(ckpt: Mapping) -> tuple[dict[str, Tensor], str]:
    """Find the model weights in a loaded checkpoint and normalise their key names.

    Returns:
        ``(state_dict, format_name)``; ``format_name`` is ``"wrapped"`` (this project's own wrapped model:
        keys ``backbone.*``/``policy.*``),
        ``"timesformer"`` (``model_state`` with ``model.*`` keys, prefix stripped), ``"deit"`` (``model``
        entry, timm keys) or ``"timm"`` (bare or ``state_dict`` entry); ``"+ddp"`` is appended when
        ``module.`` prefixes were stripped.

    Raises:
        CheckpointFileError: no tensors found.
    """
    container = next((k for k in _CONTAINER_KEYS if isinstance(ckpt.get(k), Mapping)), None)
    raw = ckpt[container] if container else ckpt
    state = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not state:
        keys = sorted(map(str, ckpt))[:_MAX_LISTED]
        raise CheckpointFileError(f"no model weights found in the checkpoint (top-level keys: {keys})")
    state, ddp = _strip_common_prefix(state, "module.")
    if all(k.startswith(("backbone.", "policy.")) for k in state):
        name = "wrapped"
    else:
        state, official = _strip_common_prefix(state, "model.")
        name = "timesformer" if official else "deit" if container == "model" else "timm"
    return state, name + ("+ddp" if ddp else "")


def _strip_common_prefix(state: dict[str, Tensor], prefix: str) -> tuple[dict[str, Tensor], bool]:
    """Remove ``prefix`` from every key if every key has it."""
    if not all(k.startswith(prefix) for k in state):
        return state, False
    return {k[len(prefix):]: v for k, v in state.items()}, True


# ---------------------------------------------------------------------------
# Shape adaptation.
# ---------------------------------------------------------------------------
def _checkpoint_prefix_tokens(state: Mapping[str, Tensor]) -> int:
    """Class, distillation and register tokens of a (``backbone.``-keyed) checkpoint."""
    tokens = int("backbone.cls_token" in state) + int("backbone.dist_token" in state)
    if "backbone.reg_token" in state:
        tokens += state["backbone.reg_token"].shape[1]
    return tokens


def _prefix_positions(pos_len: int, tokens: int) -> int:
    """Prefix positions at the front of a ``pos_embed`` of ``pos_len`` rows (``tokens`` or 0, grid square)."""
    for prefix in (tokens, 0):
        if pos_len >= prefix and math.isqrt(pos_len - prefix) ** 2 == pos_len - prefix:
            return prefix
    raise CheckpointMismatchError(f"checkpoint pos_embed of length {pos_len} is not {tokens} prefix position(s) "
                                  "+ a square patch grid; cannot resample it")


def _resample_pos_embed(value: Tensor, current: Tensor, grid: tuple[int, int], ckpt_tokens: int) -> Tensor:
    """Checkpoint ``pos_embed`` -> model shape: patch part resampled (bicubic) to ``grid``, prefix rows kept.

    Prefix rows the checkpoint lacks (e.g. a distillation position) keep the model's current values.
    """
    ckpt_prefix = _prefix_positions(value.shape[1], ckpt_tokens)
    model_prefix = current.shape[1] - grid[0] * grid[1]
    old = math.isqrt(value.shape[1] - ckpt_prefix)
    patches = resample_abs_pos_embed(value[:, ckpt_prefix:].float(), list(grid), old_size=[old, old],
                                     num_prefix_tokens=0).to(current.dtype)
    prefix = current[:, :model_prefix].clone()
    shared = min(model_prefix, ckpt_prefix)
    prefix[:, :shared] = value[:, :shared]
    return torch.cat([prefix, patches], dim=1)


def _interpolate_time_embed(value: Tensor, frames: int) -> Tensor:
    """``(1, T, C)`` temporal embedding linearly interpolated to ``frames``."""
    resized = F.interpolate(value.float().transpose(1, 2), size=frames, mode="linear", align_corners=False)
    return resized.transpose(1, 2).to(value.dtype)


def _adapt(key: str, value: Tensor, current: Tensor, grid: tuple[int, int],
           ckpt_tokens: int) -> tuple[str, Tensor | None, str] | None:
    """Decide what to do with a checkpoint tensor whose shape differs from the model's.

    Returns ``("reshaped", tensor, note)``, ``("skipped", None, note)``, or None when it does not fit.
    """
    shapes = f"{tuple(value.shape)} -> {tuple(current.shape)}"
    if key.startswith(("backbone.head.", "backbone.head_dist.")) and value.shape[1:] == current.shape[1:]:
        return "skipped", None, f"class count {value.shape[0]} vs {current.shape[0]}: left at initialisation"
    if value.ndim != current.ndim or value.shape[-1] != current.shape[-1]:
        return None
    if key == "backbone.pos_embed":
        return "reshaped", _resample_pos_embed(value, current, grid, ckpt_tokens), f"resampled {shapes}"
    if key == "backbone.time_embed":
        return "reshaped", _interpolate_time_embed(value, current.shape[1]), f"interpolated over time {shapes}"
    return None


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------
def _to_model_keys(state: dict[str, Tensor], fmt: str) -> dict[str, Tensor]:
    """Backbone-only checkpoints go under ``backbone.``."""
    return state if fmt.startswith("wrapped") else {f"backbone.{k}": v for k, v in state.items()}


def _is_distillation(key: str) -> bool:
    return key.removeprefix("backbone.").startswith(_DISTILLATION_KEYS)


def _match(state: dict[str, Tensor], target: dict[str, Tensor], grid: tuple[int, int],
           report: LoadReport) -> tuple[dict[str, Tensor], list[str]]:
    """Tensors to load (as is or adapted) and the keys whose shapes do not fit."""
    loadable, misfits = {}, []
    ckpt_tokens = _checkpoint_prefix_tokens(state)
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
            if _is_distillation(key):
                report.notes[key] = "distillation token/head dropped: the model has none"
            continue
        current = target[key]
        if value.shape == current.shape:
            loadable[key] = value
            continue
        decision = _adapt(key, value, current, grid, ckpt_tokens)
        if decision is None:
            misfits.append(key)
            continue
        kind, tensor, note = decision
        report.notes[key] = note
        if kind == "reshaped":
            assert tensor is not None  # a reshape always carries its tensor
            loadable[key] = tensor
            report.reshaped.append(key)
        else:
            report.skipped_shape.append(key)
    return loadable, misfits


def _mismatch_message(path: str, keys: list[str], state: dict[str, Tensor], target: dict[str, Tensor]) -> str:
    lines = [f"  {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}" for k in keys[:_MAX_LISTED]]
    more = f"\n  ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return (f"checkpoint {path} does not fit the model: {len(keys)} tensor(s) have incompatible shapes:\n"
            + "\n".join(lines) + more)


def _fill_missing(target: dict[str, Tensor], loadable: dict[str, Tensor], state: dict[str, Tensor],
                  report: LoadReport) -> None:
    """Record model keys the checkpoint does not provide; zero-initialise an absent temporal embedding."""
    for key in target:
        if key in state:
            continue
        report.missing.append(key)
        if key == "backbone.time_embed":
            loadable[key] = torch.zeros_like(target[key])
            report.notes[key] = "zero-initialised (as TimeSformer does from an image model)"


def _attention_type(keys: Iterable[str]) -> str | None:
    """TimeSformer attention type of a ``backbone.``-keyed key set; None for an image model (no ``time_embed``)."""
    keys = list(keys)
    blocks = [k for k in keys if k.startswith("backbone.blocks.")]
    if any(marker in k for k in blocks for marker in _DIVIDED_MARKERS):
        return "divided_space_time"
    return "joint_space_time" if blocks and "backbone.time_embed" in keys else None


def _check_attention_type(path: str, state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> None:
    """Refuse a TimeSformer checkpoint of the other attention type (same tensor shapes, other equations)."""
    held, wanted = _attention_type(state), _attention_type(target)
    if held and wanted and held != wanted:
        have = "have" if held == "divided_space_time" else "have no"
        raise CheckpointMismatchError(
            f"checkpoint {path} holds a {held} TimeSformer (its blocks {have} temporal_attn/temporal_fc keys) but "
            f"the model is {wanted}: set MODEL.ATTENTION_TYPE {held} to load it")


def _inflate_divided(state: dict[str, Tensor], target: Mapping[str, Tensor],
                     report: LoadReport) -> dict[str, Tensor]:
    """Image ViT -> divST TimeSformer as TimeSformer initialises it: each block's ``temporal_attn`` and
    ``temporal_norm1`` start as copies of its ``attn`` and ``norm1``; ``temporal_fc`` keeps the model's
    initialisation (zero after the first block)."""
    if _attention_type(state) is not None or _attention_type(target) != "divided_space_time":
        return state
    out = dict(state)
    for key in target:
        source = key.replace(".temporal_attn.", ".attn.").replace(".temporal_norm1.", ".norm1.")
        if key not in state and source != key and source in state:
            out[key] = state[source]
            report.notes[key] = f"copied from {source} (TimeSformer's image-to-divST initialisation)"
        elif ".temporal_fc." in key and key not in state:
            report.notes[key] = "left at initialisation (zero after the first block, as TimeSformer)"
    copied = len(out) - len(state)
    if copied:
        _log(logging.INFO, "image checkpoint into a divided space-time model: %d temporal_attn/temporal_norm1 "
             "tensors copied from the blocks' attn/norm1", copied)
    return out


def inflate_patch_weight(weight: Tensor, frames: int, rule: str) -> Tensor:
    """2-d patch weights ``W`` ``(C, 3, p, p)`` -> ``(C, 3, frames, p, p)`` for ``FramePatchEmbed``.

    ``"mean"``: ``W / frames`` on every frame (I3D); ``"central"``: ``W`` on the token's own frame
    (``(frames - 1) // 2``), zero elsewhere (ViViT); ``"mean_diff"``: the mean plus ``c_j W`` on frame ``j``
    with ``c`` a linear ramp from -1 to 1 over the window (sum 0), i.e. a temporal difference of the pre-trained
    features on top of their mean (for 3 frames: the next frame's minus the previous one's). The weights sum to
    ``W`` over the window under every rule, so a static clip embeds as the 2-d model embeds each frame.
    """
    if rule == "central":
        inflated = weight.new_zeros(weight.shape[:2] + (frames,) + weight.shape[2:])
        inflated[:, :, (frames - 1) // 2] = weight
        return inflated
    inflated = (weight / frames).unsqueeze(2).repeat(1, 1, frames, 1, 1)
    if rule == "mean_diff" and frames > 1:
        slope = torch.linspace(-1.0, 1.0, frames, dtype=weight.dtype, device=weight.device)
        inflated += slope[:, None, None] * weight.unsqueeze(2)
    return inflated


def _inflate_patch_frames(state: dict[str, Tensor], target: Mapping[str, Tensor], rule: str,
                          report: LoadReport) -> dict[str, Tensor]:
    """A 2-d ``patch_embed.proj.weight`` into a model whose tokens embed a window of frames."""
    key = "backbone.patch_embed.proj.weight"
    value, current = state.get(key), target.get(key)
    if value is None or current is None or value.ndim != 4 or current.ndim != 5:
        return state
    if value.shape != current[:, :, 0].shape:
        return state  # reported as a misfit by _match
    report.reshaped.append(key)
    shapes = f"{tuple(value.shape)} -> {tuple(current.shape)}"
    report.notes[key] = f"inflated over {current.shape[2]} frames ({rule}) {shapes}"
    return {**state, key: inflate_patch_weight(value, current.shape[2], rule)}


def _log_report(path: str, report: LoadReport, total: int) -> None:
    _log(logging.INFO, "loaded %d/%d model tensors from %s (format %s)", len(report.loaded), total, path,
         report.format)
    for key in report.reshaped + report.skipped_shape:
        _log(logging.INFO, "checkpoint key %s: %s", key, report.notes[key])
    for key in report.unexpected:
        _log(logging.INFO if key in report.notes else logging.WARNING, "unexpected checkpoint key %s: %s", key,
             report.notes.get(key, "ignored (no such model parameter)"))
    for key in report.missing:
        expected = key in report.notes or key.startswith("policy.") or _is_distillation(key)
        _log(logging.INFO if expected else logging.WARNING, "model key %s missing from checkpoint: %s", key,
             report.notes.get(key, "left at its current value"))


def load_pretrained(model: nn.Module, path: str | os.PathLike, strict_shapes: bool = True) -> LoadReport:
    """Load a local checkpoint into a ``PolicyModel``, adapting shapes where TimeSformer does.

    Args:
        model: a ``PolicyModel`` module (``backbone`` with ``patch_embed``; optional ``policy``).
        path: a checkpoint in any format ``extract_state_dict`` understands.
        strict_shapes: raise on tensors whose shapes cannot be adapted; if False, skip them (reported).

    Raises:
        CheckpointMismatchError: tensors that do not fit (with ``strict_shapes``), or no key matches at all.
    """
    path = os.fspath(path)
    state, fmt = extract_state_dict(load_checkpoint_file(path))
    state = _to_model_keys(state, fmt)
    target = model.state_dict()
    report = LoadReport(format=fmt)
    _check_attention_type(path, state, target)
    state = _inflate_divided(state, target, report)
    embed = cast(Backbone, model.backbone).patch_embed  # every wrapped model has a backbone
    state = _inflate_patch_frames(state, target, getattr(embed, "inflation", "mean_diff"), report)
    grid = tuple(embed.grid_size)
    loadable, misfits = _match(state, target, grid, report)
    if misfits and strict_shapes:
        raise CheckpointMismatchError(_mismatch_message(path, misfits, state, target))
    for key in misfits:
        report.skipped_shape.append(key)
        report.notes[key] = f"shape {tuple(state[key].shape)} does not fit {tuple(target[key].shape)}: skipped"
    if not loadable:
        raise CheckpointMismatchError(
            f"checkpoint {path} ({fmt}) shares no tensor with the model: checkpoint keys "
            f"{list(state)[:5]}..., model keys {list(target)[:5]}...")
    report.loaded = list(loadable)
    _fill_missing(target, loadable, state, report)
    model.load_state_dict(loadable, strict=False)
    _log_report(path, report, len(target))
    return report
