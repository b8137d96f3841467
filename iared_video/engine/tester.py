"""Multi-view testing: clip-1 / video-1 error for video, top-1 / top-5 for images, with cost statistics.

``test`` returns a :class:`~iared_video.utils.results.TestResults` (what later stages use) and writes it to
``OUTPUT_DIR/test_results.json``, with per-video (per-image) predictions in ``OUTPUT_DIR/test_predictions.csv``.
Predictions of every rank are gathered before the metrics are computed.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterable
from typing import cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

import iared_video.engine.checkpoint as ckpt
import iared_video.engine.distributed as du
from iared_video.config import device_of, is_video
from iared_video.datasets import construct_loader
from iared_video.engine.logging import get_logger, log_json_stats
from iared_video.engine.meters import TestMeter
from iared_video.engine.trainer import LoaderFn, amp_dtype_of, build_initial_model
from iared_video.methods import method_for_cfg, model_gmacs_per_sample
from iared_video.methods.steps import autocast, keep_ratios
from iared_video.models.weights import load_pretrained
from iared_video.utils.results import TestResults, save_json

__all__ = ["test", "run_test_pass", "load_test_weights"]

logger = get_logger(__name__)


def load_test_weights(model: nn.Module, path: str, output_dir: str) -> str:
    """Load ``path`` (any supported format), else the newest valid checkpoint in ``output_dir``.

    Returns a description of what was loaded.
    """
    if path:
        load_pretrained(model, path)
        return path
    found = ckpt.load_newest_valid(output_dir) if output_dir else None
    if found is None:
        logger.warning("no checkpoint in %s and TEST.CHECKPOINT_FILE_PATH empty: testing the model as built",
                       output_dir)
        return "model as built"
    model.load_state_dict(found[1]["model_state"])
    return found[0]


def _valid_mask(batch: dict) -> Tensor:
    default = torch.ones(batch["label"].shape[0], dtype=torch.bool)
    return torch.as_tensor(batch.get("valid", default)).bool()


def _field(batch: dict, key: str, fallback: str, valid: Tensor) -> Tensor:
    value = batch.get(key, batch.get(fallback, torch.zeros(valid.shape[0], dtype=torch.long)))
    return torch.as_tensor(value)[valid]


@torch.no_grad()
def run_test_pass(model: nn.Module, loader: Iterable[dict], meter: TestMeter, device: torch.device,
                  amp_dtype: torch.dtype | None = None, gmacs: Callable | None = None) -> tuple[float, int, set]:
    """Run every batch through ``model`` (all groups greedy) into ``meter``.

    Returns:
        seconds spent in the model, number of views run, and the indices of videos left out as unreadable.
    """
    model.eval()
    seconds, views, unreadable = 0.0, 0, set()
    for batch in loader:
        valid = _valid_mask(batch)
        unreadable.update(torch.as_tensor(batch.get("video_index", batch.get("index")))[~valid].tolist())
        if not valid.any():
            continue
        x = batch["inputs"][valid].to(device, non_blocking=True)
        tic = _sync_time(device)
        with autocast(device, amp_dtype):
            out = model(x, return_policy=True)
        seconds += _sync_time(device) - tic
        views += x.shape[0]
        macs = gmacs(model, out) if gmacs is not None else None
        meter.update(out.logits, batch["label"][valid], _field(batch, "video_index", "index", valid),
                     _field(batch, "temporal_index", "temporal_index", valid),
                     _field(batch, "spatial_index", "spatial_index", valid), keep_ratios(out),
                     torch.as_tensor(macs) if macs is not None else None)
    return seconds, views, unreadable


def _sync_time(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _gather_rows(rows: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    if du.get_world_size() == 1:
        return rows
    return {k: du.all_gather(v.to(device)).cpu() for k, v in rows.items()}


def _empty_rows(num_groups: int) -> dict[str, Tensor]:
    long = torch.empty(0, dtype=torch.long)
    return {"logits": torch.empty(0, 1), "labels": long, "video_index": long, "temporal_index": long,
            "spatial_index": long, "keep": torch.empty(0, num_groups)}


def _write_predictions(path: str, results: TestResults, rows: dict[str, Tensor], video: bool) -> None:
    """Per-video (video) or per-image (image) predictions as CSV."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "prediction", "probability"])
        if video:
            for p in results.video_predictions or []:
                writer.writerow([p["video_index"], p["label"], p["prediction"], f"{p['probability']:.6f}"])
            return
        probs = rows["logits"].softmax(-1)
        seen = set()
        for index, label, prob in zip(rows["video_index"].tolist(), rows["labels"].tolist(), probs):
            if index not in seen:
                seen.add(index)
                writer.writerow([index, label, int(prob.argmax()), f"{float(prob.max()):.6f}"])


def _write_results(output_dir: str, results: TestResults, rows: dict[str, Tensor], video: bool) -> None:
    os.makedirs(output_dir, exist_ok=True)
    _write_predictions(os.path.join(output_dir, "test_predictions.csv"), results, rows, video)
    save_json(results.summary(), os.path.join(output_dir, "test_results.json"))


def test(cfg: CfgNode, info: du.DistInfo = du.SINGLE_PROCESS, loader_fn: LoaderFn | None = None,
         model: nn.Module | None = None) -> TestResults:
    """Test ``cfg``'s model on the test split; returns (and on the master writes) the results."""
    device = device_of(cfg, info.local_rank)
    if model is None:
        model = build_initial_model(cfg, device)
        source = load_test_weights(model, cfg.TEST.CHECKPOINT_FILE_PATH, cfg.OUTPUT_DIR)
    else:
        source = "model in memory"
    model = model.to(device)
    loader_fn = loader_fn or construct_loader
    video = is_video(cfg)
    meter = TestMeter(cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
    method = method_for_cfg(cfg)
    logger.info("testing %s (%s): %s", cfg.MODEL.MODEL_NAME, method.name, source)
    seconds, views, unreadable = run_test_pass(model, loader_fn(cfg, "test"), meter, device,
                                               amp_dtype_of(cfg, device), model_gmacs_per_sample)
    rows = _gather_rows(meter.tensors() if meter.rows else _empty_rows(cast(int, model.num_groups)), device)
    unreadable_all = set().union(*du.all_gather_objects(unreadable))
    results = TestResults(**TestMeter.summarize(rows, meter.num_temporal, meter.num_spatial, video),
                          **_cost_stats(seconds, views, video), num_videos_unreadable=len(unreadable_all),
                          checkpoint=source, policy=method.label, method=method.name,
                          num_processes=du.get_world_size())
    if results.num_videos_missing_views:
        logger.warning("%d videos miss views (left out of video-1): %s", results.num_videos_missing_views,
                       (results.videos_missing_views or [])[:10])
    if du.is_master():
        _write_results(cfg.OUTPUT_DIR, results, rows, video)
        log_json_stats({"_type": "test", **{k: v for k, v in results.summary().items()
                                            if k != "videos_missing_views"}})
    return results


def _cost_stats(seconds: float, views: int, video: bool) -> dict:
    """Throughput of this process's test pass (model time only, data loading excluded)."""
    unit = "clips_per_s" if video else "images_per_s"
    return {unit: views / seconds if seconds > 0 else float("nan"), "test_model_seconds": seconds,
            "num_views_run": views}
