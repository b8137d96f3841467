"""One results schema for validation, test, benchmark and the main job, and the one JSON and table writer.

Stages hand these records to each other in memory (``engine.tester.test`` returns a :class:`TestResults`,
the main job builds :class:`MainJobRow` from it); the JSON files in ``OUTPUT_DIR`` are written for users by
:func:`save_json`, and every text table in the project comes from :func:`format_table`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

import simplejson

__all__ = ["Record", "ValResults", "TestResults", "BenchmarkResults", "MainJobRow", "MainJobResults",
           "save_json", "load_json", "format_table", "to_jsonable"]

#: Field metadata of values that belong to one kind of run only (video or image): left out when None.
KIND_ONLY = {"omit_none": True}
_OLD_GROUP_KEY = re.compile(r"keep_ratio_g(\d+)$")  # validation's per-group keep ratios before the schema


def _kind_only(default: Any = None) -> Any:
    return field(default=default, metadata=KIND_ONLY)


_R = TypeVar("_R", bound="Record")


@dataclass
class Record:
    """Base of the schema: ``to_dict`` for the writer, ``from_dict`` for old files."""

    def to_dict(self) -> dict[str, Any]:
        """The fields in declaration order; kind-only fields that are None are left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        """A record from a loaded JSON object; unknown keys are ignored, missing ones take their default."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in _renamed(data).items() if k in names})


def _renamed(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the pre-schema per-group keys (``keep_ratio_g1`` ...) read as ``keep_ratio_per_group``."""
    out = dict(data)
    groups = sorted((int(m.group(1)), k) for k in data if (m := _OLD_GROUP_KEY.match(k)))
    if groups and "keep_ratio_per_group" not in out:
        out["keep_ratio_per_group"] = [float(data[k]) for _, k in groups]
    return out


@dataclass
class ValResults(Record):
    """Validation after an epoch (all groups as the stage evaluates them): errors in percent, keep ratios."""

    top1_err: float
    top5_err: float
    num_samples: int
    keep_ratio_per_group: list[float] = field(default_factory=list)
    keep_ratio: float | None = _kind_only()


@dataclass
class TestResults(Record):
    """The test split: clip-1 / video-1 error for video, top-1 / top-5 for images (percent), cost statistics.

    ``video_predictions`` (per complete video) goes to ``test_predictions.csv``, not to the JSON file.
    """

    clip1_err: float | None = _kind_only()
    video1_err: float | None = _kind_only()
    num_videos: int | None = _kind_only()
    num_videos_scored: int | None = _kind_only()
    num_clip1_scored: int | None = _kind_only()
    num_videos_missing_views: int | None = _kind_only()
    videos_missing_views: list[dict] | None = _kind_only()
    video_predictions: list[dict] | None = _kind_only()
    top1_err: float | None = _kind_only()
    top5_err: float | None = _kind_only()
    num_images: int | None = _kind_only()
    keep_ratio_per_group: list[float] = field(default_factory=list)
    keep_ratio: float = float("nan")
    gmacs_per_view: float | None = None
    clips_per_s: float | None = _kind_only()
    images_per_s: float | None = _kind_only()
    test_model_seconds: float = 0.0
    num_views_run: int = 0
    num_videos_unreadable: int = 0
    checkpoint: str = ""
    policy: str = ""
    method: str = ""
    num_processes: int = 1

    __test__ = False  # a record, not a pytest test class

    def summary(self) -> dict[str, Any]:
        """What ``test_results.json`` holds: everything but the per-video predictions."""
        return {k: v for k, v in self.to_dict().items() if k != "video_predictions"}

    @property
    def count(self) -> int:
        """How many test samples the headline error is over (scored videos, else images)."""
        return int(self.num_videos_scored if self.num_videos_scored is not None else self.num_images or 0)


@dataclass
class BenchmarkResults(Record):
    """Throughput benchmark: one row per (variant, batch size, precision), the unit, machine and settings."""

    rows: list[dict]
    unit: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    model: dict[str, Any]


@dataclass
class MainJobRow(Record):
    """One method of the main job's table: cost, error with its 95% Wilson interval, measured speed-up at the
    table's batch and at batch 1, the FLOPs-ideal speed-up (dense GMACs / GMACs), heat-map mIoU and mAP."""

    method: str
    keep_ratio: float
    gmacs_per_view: float | None
    clip1_err: float | None = _kind_only()
    clip1_ci95: str | None = _kind_only()
    video1_err: float | None = _kind_only()
    video1_ci95: str | None = _kind_only()
    clips_per_s: float | None = _kind_only()
    top1_err: float | None = _kind_only()
    top1_ci95: str | None = _kind_only()
    images_per_s: float | None = _kind_only()
    speedup: float = 1.0
    speedup_b1: float | None = None
    ideal_speedup: float | None = None
    gmacs_ratio: float | None = None
    heatmap_miou: float | None = None
    heatmap_map: float | None = None


@dataclass
class MainJobResults(Record):
    """The main job: which branch, each baseline's and peer's knob setting (``KEY=VALUE``), the table rows."""

    kind: str
    from_scratch: bool
    settings: dict[str, str]
    rows: list[MainJobRow]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with records as dicts, tuples as lists, and non-finite floats as None (JSON null)."""
    if isinstance(obj, Record):
        obj = obj.to_dict()
    elif is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def save_json(obj: Any, path: str, sort_keys: bool = False) -> str:
    """Write ``obj`` (records, dataclasses, dicts) as indented JSON, atomically, creating the folder.

    The file appears whole or not at all (written beside it, then renamed), so a reader never sees half a
    results file. NaN and infinities become null. Returns ``path``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        simplejson.dump(to_jsonable(obj), f, indent=2, sort_keys=sort_keys)
    os.replace(tmp, path)
    return path


def load_json(path: str) -> Any:
    """The JSON object in ``path``."""
    with open(path) as f:
        return simplejson.load(f)


def format_table(rows: Iterable[Mapping[str, Any] | Record], columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table, right-aligned, floats with 4 significant digits, None as ``-``.

    Args:
        rows: dicts or records.
        columns: the columns in order (default: every key, in first-seen order); columns that no row has are
            left out.
    """
    dicts = [r.to_dict() if isinstance(r, Record) else dict(r) for r in rows]
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in dicts for k in r))
    cols = [c for c in cols if any(c in r for r in dicts)]
    body = [[_cell(r.get(c)) for c in cols] for r in dicts]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
