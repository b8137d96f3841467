"""Our own training checkpoints: atomic saves, newest-valid lookup, resume.

Files live in ``OUTPUT_DIR/checkpoints`` (PySlowFast naming). ``EPOCH`` is a
global epoch counter over all curriculum stages (1-based):

    checkpoint_epoch_{EPOCH:05d}.pyth              end of that epoch
    checkpoint_epoch_{EPOCH:05d}_iter_{IT:06d}.pyth  mid-epoch, after IT loader iterations of EPOCH

Everything is stored as tensors, numbers, strings and lists so that
``torch.load(..., weights_only=True)`` reads it back.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import yaml
from fvcore.common.config import CfgNode

from iared_video.config import former_key_errors
from iared_video.engine.logging import get_logger
from iared_video.methods import config_nodes
from iared_video.utils.cli import UserError

__all__ = ["checkpoint_dir", "checkpoint_name", "list_checkpoints", "save_checkpoint", "load_checkpoint",
           "load_newest_valid", "newest_checkpoint", "position_of", "rng_state", "set_rng_state", "CheckpointError",
           "TrainPosition", "training_config_changes", "training_keys"]

logger = get_logger(__name__)
_PATTERN = re.compile(r"^checkpoint_epoch_(\d{5})(?:_iter_(\d{6}))?\.pyth$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be used (truncated, corrupt or missing fields)."""


@dataclass(frozen=True)
class TrainPosition:
    """Where training stands: ``iteration`` loader iterations done in epoch ``epoch`` of stage ``stage``.

    ``global_epoch`` counts epochs over all stages (0-based, the epoch in progress).
    ``iteration == 0`` with ``epoch_done`` means the epoch finished.
    """

    stage: int
    epoch: int
    iteration: int
    global_epoch: int
    epoch_done: bool


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def checkpoint_name(global_epoch: int, iteration: int | None = None) -> str:
    """File name for the end of ``global_epoch`` (1-based) or after ``iteration`` iterations of it."""
    if iteration is None:
        return f"checkpoint_epoch_{global_epoch:05d}.pyth"
    return f"checkpoint_epoch_{global_epoch:05d}_iter_{iteration:06d}.pyth"


def _order(name: str) -> tuple[int, int] | None:
    """Sort key (finished epochs, extra iterations) of a checkpoint name, or None for other files."""
    match = _PATTERN.match(name)
    if match is None:
        return None
    epoch, iteration = int(match.group(1)), match.group(2)
    return (epoch, 0) if iteration is None else (epoch - 1, int(iteration))


def list_checkpoints(output_dir: str) -> list[str]:
    """Checkpoint paths in ``output_dir/checkpoints``, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    named = [(key, name) for name in os.listdir(folder) if (key := _order(name)) is not None]
    return [os.path.join(folder, name) for _, name in sorted(named)]


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as weights_only-safe values."""
    version, inner, gauss = random.getstate()
    np_state = cast(tuple[Any, ...], np.random.get_state())  # legacy=True: the tuple form (stubs say either)
    state = {
        "python": [version, torch.tensor(inner, dtype=torch.int64), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, inner, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in inner.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, then ``os.replace``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


REQUIRED = ("model_state", "stage", "epoch", "iteration", "global_epoch")


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one of our checkpoints with ``weights_only=True``.

    Raises:
        CheckpointError: the file is truncated, corrupt or lacks a required field.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or corrupt?): {exc}") from exc
    missing = [k for k in REQUIRED if k not in payload] if isinstance(payload, dict) else list(REQUIRED)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the fields {missing}; not a training checkpoint of ours")
    return payload


def load_newest_valid(output_dir: str, map_location: str | torch.device = "cpu") -> tuple[str, dict] | None:
    """Newest checkpoint that loads; unreadable ones are logged as errors and skipped."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as exc:
            logger.error("refusing checkpoint: %s; falling back to the previous one", exc)
    return None


def newest_checkpoint(output_dir: str) -> str:
    """Path of the newest valid checkpoint of ``output_dir``; FileNotFoundError when there is none."""
    found = load_newest_valid(output_dir)
    if found is None:
        raise FileNotFoundError(f"no valid checkpoint in {output_dir}/checkpoints")
    return found[0]


def position_of(payload: dict[str, Any]) -> TrainPosition:
    """Training position recorded in a checkpoint payload."""
    return TrainPosition(int(payload["stage"]), int(payload["epoch"]), int(payload["iteration"]),
                         int(payload["global_epoch"]), bool(payload.get("epoch_done", False)))


#: Config sections (and top-level keys) whose values shape what a run trains, besides the methods' own sections
#: (``training_keys``).
TRAINING_KEYS = ("MODEL", "METHOD", "DATA", "SOLVER", "TRAIN", "RNG_SEED")
#: Keys that may differ between a run and its resumption: where files are, how often to log, check or save.
RESUMABLE_CHANGES = ("MODEL.PRETRAINED", "DATA.PATH_TO_DATA_DIR", "DATA.PATH_PREFIX", "TRAIN.CHECKPOINT_FILE_PATH",
                     "TRAIN.ENABLE", "TRAIN.AUTO_RESUME", "TRAIN.EVAL_PERIOD", "TRAIN.CHECKPOINT_PERIOD",
                     "TRAIN.CHECKPOINT_ITER_PERIOD")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def training_keys() -> tuple[str, ...]:
    """``TRAINING_KEYS`` and every method's config sections (``Method.config_nodes``, from the registry)."""
    return TRAINING_KEYS + config_nodes()


def training_config_changes(saved_dump: str, cfg: CfgNode) -> list[str]:
    """``"KEY: saved -> now"`` for every training key where ``cfg`` differs from the config a checkpoint was
    written under (``saved_dump``, its ``cfg.dump()``); paths and logging/checkpoint periods are not compared."""
    saved, now = _flat(yaml.safe_load(saved_dump) or {}), _flat(yaml.safe_load(cfg.dump()))
    former = former_key_errors(saved)
    if former:  # written before the keys were renamed: say what replaces them
        return former
    changes, sections = [], training_keys()
    for key in sorted(set(saved) | set(now)):
        if key.split(".")[0] not in sections or key in RESUMABLE_CHANGES:
            continue
        if saved.get(key) != now.get(key):
            changes.append(f"{key}: {saved.get(key)!r} -> {now.get(key)!r}")
    return changes
