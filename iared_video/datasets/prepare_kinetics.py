"""Kinetics-400 split files from the official annotation CSVs and a folder of downloaded clips.

The official annotations (``train.csv``, ``validate.csv``, ``test.csv``; columns
``label,youtube_id,time_start,time_end,split``) name each clip by YouTube id and time window; the
public archives and the crawlers save it as ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, flat or in
per-class folders. ``prepare_kinetics`` finds every clip under the videos folder, checks that it
decodes (the loader's decoders, in parallel), and writes ``train.csv``, ``val.csv`` and ``test.csv``
as the ``path label`` lines ``datasets.kinetics`` reads, labels numbered in Kinetics-400 order
(alphabetical, as torchvision's metadata lists the classes). A clip that is missing, undecodable or
unlabeled is left out, named in ``left_out.csv`` and counted; it never stops the run.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from iared_video.datasets.bad_data import DataSplitError
from iared_video.datasets.check import run_checks

logger = logging.getLogger(__name__)

__all__ = ["SPLIT_FILES", "VIDEO_EXTENSIONS", "Clip", "SplitResult", "clip_stem", "find_videos",
           "kinetics400_classes", "prepare_kinetics", "read_annotations"]

#: Official annotation file -> split file written (the loader's split names).
SPLIT_FILES = {"train.csv": "train.csv", "validate.csv": "val.csv", "test.csv": "test.csv"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv")
#: Columns an annotation file must have (``label`` may be absent: unlabeled test releases).
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")
LEFT_OUT_FILE = "left_out.csv"
# Progress wrapper: (iterable, total, desc) -> iterable. The tool passes tqdm.
Progress = Callable[[Iterable, int, str], Iterable]


def kinetics400_classes() -> list[str]:
    """The 400 class names in Kinetics-400 label order, from torchvision's weights metadata (no download)."""
    from torchvision.models.video import R3D_18_Weights

    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def normalize_class(name: str) -> str:
    """Class name for matching: case, quotes and ``_`` for spaces (crawler folder names) do not matter."""
    return name.strip().strip("'\"").replace("_", " ").lower()


@dataclass(frozen=True)
class Clip:
    """One row of an annotation file."""

    youtube_id: str
    start: int
    end: int
    label: str  # "" when the release gives no label


def clip_stem(youtube_id: str, start: int, end: int) -> str:
    """File name (without extension) of a clip: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def read_annotations(path: str) -> list[Clip]:
    """Rows of an official annotation CSV.

    Raises:
        DataSplitError: a column of ``REQUIRED_COLUMNS`` is missing or a time is not a number.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataSplitError(f"{path}: no column {missing} (columns: {reader.fieldnames})")
        clips = []
        for number, row in enumerate(reader, start=2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError as exc:
                raise DataSplitError(f"{path}:{number}: time_start/time_end are not numbers: {row}") from exc
            clips.append(Clip(row["youtube_id"].strip(), start, end, (row.get("label") or "").strip()))
    return clips


def find_videos(root: str) -> dict[str, str]:
    """Map file stem -> path for every video file under ``root`` (first in sorted walk order wins)."""
    found: dict[str, str] = {}
    duplicates = 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            if stem in found:
                duplicates += 1
                continue
            found[stem] = os.path.join(folder, name)
    if duplicates:
        logger.warning("%s: %d clips found twice; the first in sorted order is used", root, duplicates)
    return found


def label_ids(clips: Sequence[Clip], classes: Sequence[str], path: str) -> dict[str, int]:
    """Label index of every class name used in ``clips``.

    Raises:
        DataSplitError: a label that is not a Kinetics-400 class (another Kinetics release?).
    """
    index = {normalize_class(name): i for i, name in enumerate(classes)}
    unknown = sorted({c.label for c in clips if c.label and normalize_class(c.label) not in index})
    if unknown:
        raise DataSplitError(f"{path}: {len(unknown)} labels are not Kinetics-400 classes, e.g. {unknown[:5]}")
    return {c.label: index[normalize_class(c.label)] for c in clips if c.label}


@dataclass
class SplitResult:
    """What preparing one split wrote and left out."""

    split: str  # the split file written ("train.csv", ...)
    rows: list[tuple[str, int]] = field(default_factory=list)  # (path as written, label)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (clip stem, reason)
    unlabeled: int = 0  # rows without a label (left out too)

    @property
    def written(self) -> bool:
        """Whether the split file was written (a split with no row is not)."""
        return bool(self.rows)


def _locate(clips: Sequence[Clip], videos: dict[str, str], result: SplitResult) -> list[tuple[Clip, str]]:
    """The labeled clips found on disk; the others go to ``result.left_out``."""
    located = []
    for clip in clips:
        stem = clip_stem(clip.youtube_id, clip.start, clip.end)
        if not clip.label:
            result.unlabeled += 1
            result.left_out.append((stem, "no label in the annotation file"))
        elif stem in videos:
            located.append((clip, videos[stem]))
        else:
            result.left_out.append((stem, "missing: no video file with this name"))
    return located


def _no_progress(items: Iterable, total: int, desc: str) -> Iterable:
    return items


def prepare_kinetics(annotations: str, videos: str, out: str, workers: int = 0, backend: str = "decord",
                     num_frames: int = 4, progress: Progress = _no_progress) -> list[SplitResult]:
    """Write ``out/{train,val,test}.csv``, ``out/classnames.json`` and ``out/left_out.csv``.

    Paths are written relative to ``out`` (the loader resolves them against ``DATA.PATH_TO_DATA_DIR``).
    An annotation file that is not in ``annotations`` is skipped with a log line.

    Args:
        annotations: Folder with the official ``train.csv`` / ``validate.csv`` / ``test.csv``.
        videos: Folder searched (recursively) for the clips.
        out: Output folder (created).
        workers: Decoding check processes (0: in this process).
        backend: Decoder tried first (the other one is the fallback, as in the loader).
        num_frames: Evenly spaced frames decoded per clip by the check.
        progress: Wraps the check's iterator (e.g. tqdm).
    """
    for folder in (annotations, videos):
        if not os.path.isdir(folder):
            raise NotADirectoryError(f"not a folder: {folder}")
    classes = kinetics400_classes()
    found = find_videos(videos)
    logger.info("%s: %d video files", videos, len(found))
    os.makedirs(out, exist_ok=True)
    results, jobs = [], []
    for source, split in SPLIT_FILES.items():
        path = os.path.join(annotations, source)
        if not os.path.exists(path):
            logger.warning("%s not found: %s not written", path, split)
            continue
        clips = read_annotations(path)
        ids = label_ids(clips, classes, path)
        result = SplitResult(split)
        jobs += [(result, clip, video, ids[clip.label]) for clip, video in _locate(clips, found, result)]
        results.append(result)
    reports = run_checks([video for _, _, video, _ in jobs], backend, num_frames, workers, fallback=True)
    for (result, clip, video, label), report in zip(jobs, progress(reports, len(jobs), "decoding")):
        if report.ok:
            result.rows.append((os.path.relpath(video, out), label))
        else:
            result.left_out.append((clip_stem(clip.youtube_id, clip.start, clip.end), f"undecodable: {report.reason}"))
    _write_outputs(out, results, classes)
    return results


def _write_outputs(out: str, results: Sequence[SplitResult], classes: Sequence[str]) -> None:
    """Split files, class names and the left-out report; logs what was left out."""
    for result in results:
        if result.written:
            with open(os.path.join(out, result.split), "w", encoding="utf-8") as f:
                f.writelines(f"{path} {label}\n" for path, label in result.rows)
        _log_split(result)
    with open(os.path.join(out, "classnames.json"), "w", encoding="utf-8") as f:
        json.dump({name: i for i, name in enumerate(classes)}, f, indent=1)
    with open(os.path.join(out, LEFT_OUT_FILE), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "clip", "reason"])
        writer.writerows((r.split, stem, reason) for r in results for stem, reason in r.left_out)


def _log_split(result: SplitResult, shown: int = 10) -> None:
    logger.info("%s: %d clips written, %d left out", result.split, len(result.rows), len(result.left_out))
    named = [(stem, reason) for stem, reason in result.left_out if not reason.startswith("no label")]
    for stem, reason in named[:shown]:
        logger.warning("%s: left out %s (%s)", result.split, stem, reason)
    if len(named) > shown:
        logger.warning("%s: ... %d more, every one in %s", result.split, len(named) - shown, LEFT_OUT_FILE)
    if result.unlabeled:
        logger.warning("%s: %d clips have no label (an unlabeled test release): left out%s", result.split,
                       result.unlabeled, "" if result.written else f"; {result.split} not written, "
                       "test on the validation split (TEST.SPLIT val)")
