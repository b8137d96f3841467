"""The video data set: rendered, encoded and written in the Kinetics CSV layout with per-frame masks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from iared_video.synthetic.knobs import (
    DEFAULT_NUM_VIDEOS,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    SPLITS,
    VIDEO_CLASSES,
    VideoKnobs,
    make_knobs,
    recorded_knobs,
)
from iared_video.synthetic.parallel import run_jobs
from iared_video.synthetic.scenes import render_scene, sample_scene
from iared_video.synthetic.splits import balanced_labels, check_counts, stratified_splits
from iared_video.synthetic.streams import video_rng
from iared_video.synthetic.writers import save_masks, write_json, write_mp4

__all__ = ["generate_video_dataset"]


def _make_video_item(job: tuple[str, int, int, int, str, VideoKnobs, str]) -> dict:
    """Renders, encodes and writes one video and its masks; returns its info."""
    out_dir, seed, index, label, split, knobs, version = job
    scene = sample_scene(video_rng(seed, index), knobs, None, None, None, None, version)
    frames, masks = render_scene(scene, VIDEO_CLASSES[label])
    stem = f"{index:06d}"
    rel_video, rel_mask = f"videos/{stem}.mp4", f"masks/{stem}.npz"
    write_mp4(os.path.join(out_dir, rel_video), frames, scene.fps, knobs.crf)
    save_masks(os.path.join(out_dir, rel_mask), masks)
    t, h, w = masks.shape
    return {"index": index, "path": rel_video, "mask": rel_mask, "label": label,
            "class": VIDEO_CLASSES[label], "split": split, "fps": scene.fps, "frames": t,
            "width": w, "height": h, "actor_shape": scene.actor.shape,
            "actor_diameter": round(2 * scene.actor.radius, 2)}


def _write_csvs(out_dir: str, items: list[dict], splits: Sequence[str]) -> None:
    """Writes ``<split>.csv`` files with lines ``relative/path.mp4 LABEL``."""
    for split in splits:
        lines = [f"{it['path']} {it['label']}\n" for it in items if it["split"] == split]
        with open(os.path.join(out_dir, f"{split}.csv"), "w", encoding="utf-8") as f:
            f.writelines(lines)


def generate_video_dataset(out_dir: str, num_videos: int = DEFAULT_NUM_VIDEOS, seed: int = 0,
                           num_classes: int = 8, *,
                           split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
                           difficulty: str = "medium", version: str = GENERATOR_VERSION,
                           num_workers: int = 1, progress: bool = False, **knobs: Any) -> dict:
    """Generates the synthetic action-recognition set in the Kinetics layout.

    Writes ``videos/NNNNNN.mp4``, ``masks/NNNNNN.npz``, ``train.csv``,
    ``val.csv``, ``test.csv``, ``classnames.json`` and ``meta.json`` under
    ``out_dir``. Video ``i`` depends only on ``(seed, i, label_i, knobs)``.

    Args:
        out_dir: Output directory (created if needed).
        num_videos: Number of videos (labels are class-balanced).
        seed: Non-negative seed; the same seed gives the same set.
        num_classes: Uses the first ``num_classes`` of :data:`VIDEO_CLASSES`.
        split_ratios: train/val/test proportions, applied per class.
        difficulty: Knob preset (``easy``, ``medium``, ``hard``).
        version: Generator version (:data:`VIDEO_VERSIONS`): ``1.2.1``, the default (a still camera), ``2.0.0``
            (a hand-held camera, distractors that move like actors) or ``1.2.0``, which with a 1.2.0 set's
            seed, difficulty and knobs (its ``meta.json``) writes that set again byte for byte.
        num_workers: Worker processes (<= 1: in-process). Output is identical.
        progress: Show a tqdm progress bar.
        **knobs: :class:`VideoKnobs` overrides.

    Returns:
        The meta dict that is also written to ``meta.json``.
    """
    check_counts(num_videos, num_classes, len(VIDEO_CLASSES), seed, split_ratios, 3)
    vknobs = make_knobs(VideoKnobs, difficulty, version, **knobs)
    for sub in ("videos", "masks"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    labels = balanced_labels(num_videos, num_classes, seed)
    splits = stratified_splits(labels, split_ratios, seed)
    jobs = [(out_dir, seed, i, int(labels[i]), SPLITS[splits[i]], vknobs, version)
            for i in range(num_videos)]
    items = list(run_jobs(_make_video_item, jobs, num_workers, progress, "videos", chunksize=4))
    _write_csvs(out_dir, items, SPLITS)
    classnames = {name: i for i, name in enumerate(VIDEO_CLASSES[:num_classes])}
    write_json(os.path.join(out_dir, "classnames.json"), classnames)
    meta = {"generator": GENERATOR_NAME, "version": version,
            "kind": "video", "seed": seed, "num_videos": num_videos, "num_classes": num_classes,
            "classes": VIDEO_CLASSES[:num_classes], "split_ratios": list(split_ratios),
            "difficulty": difficulty, "knobs": recorded_knobs(vknobs, version), "videos": items}
    return write_json(os.path.join(out_dir, "meta.json"), meta)
