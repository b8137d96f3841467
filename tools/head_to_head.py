#!/usr/bin/env python
"""IA-RED^2 vs DynamicViT vs fixed-ratio baselines on the synthetic video and image sets, in one command.

    python tools/head_to_head.py --out ./output/head_to_head [--kinds video image] [--epochs N] [--quick]
                                 [--no-train] [--max-samples M] [--large-batch B] [KEY VALUE ...]

Per kind: train dense, then IA-RED^2, DynamicViT (rho from its config) and the random / attention (/ temporal
difference for video) baselines from the dense weights (fixed ratio = 1 - IA-RED^2's measured keep ratio, as the
main job does); methods whose OUTPUT_DIR already has ``test_results.json`` are not retrained (``--no-train``
only reads). Then for each method: accuracy and GMACs/view (tester's ``test_results.json``), throughput at
batch 1 and ``--large-batch`` (``iared_video.utils.benchmark.throughput``, interleaved, vs dense), and heatmap
segmentation scores (pixel accuracy, mAcc, mIoU, mAP against the synthetic masks) of each method's last-stage
policy scores (DynamicViT: keep probabilities, 0 where dropped). Writes ``head_to_head.json`` and Pareto plots
(accuracy vs GMACs, accuracy vs batch-1 throughput) into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import torch  # noqa: E402

CONFIGS = {  # method -> config per kind (None: not applicable)
    "dense": {"video": "tsf_tiny_dense", "image": "deit_tiny_dense"},
    "iared": {"video": "tsf_tiny_iared", "image": "deit_tiny_iared"},
    "dynamicvit": {"video": "tsf_tiny_dynamicvit", "image": "deit_tiny_dynamicvit"},
    "random": {"video": "tsf_tiny_random", "image": "deit_tiny_random"},
    "attention": {"video": "tsf_tiny_random", "image": "deit_tiny_random"},
    "temporal_diff": {"video": "tsf_tiny_random", "image": None},
}
DATA_DIRS = {"video": "./data/synthetic", "image": "./data/synthetic_images"}


def epoch_opts(epochs: int | None, quick: bool) -> list[str]:
    """Overrides that shorten training (``--epochs``) and shrink everything for a smoke run (``--quick``)."""
    opts: list[str] = []
    if quick and epochs is None:
        epochs = 1
    if epochs is not None:
        opts += ["SOLVER.MAX_EPOCH", str(epochs), "IARED.INTERPRETER_EPOCHS", str(epochs),
                 "IARED.BACKBONE_EPOCHS", str(epochs)]
    if quick:
        opts += ["TRAIN.EVAL_PERIOD", "0", "TEST.NUM_SPATIAL_CROPS", "1", "DATA_LOADER.NUM_WORKERS", "0"]
    return opts


def method_cfg(method: str, kind: str, out: str, opts: list[str], dense_ckpt: str = "", drop: float | None = None):
    """The loaded config of ``method`` on ``kind`` (output under ``out/kind/method``)."""
    from iared_video.config import load_config

    extra = ["DATA.PATH_TO_DATA_DIR", DATA_DIRS[kind], "OUTPUT_DIR", os.path.join(out, kind, method)]
    if method != "dense":
        extra += ["TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt]
    if method in ("random", "attention", "temporal_diff"):
        extra += ["IARED.POLICY", method] + (["IARED.DROP_RATIO", repr(drop)] if drop is not None else [])
    return load_config(str(ROOT / "configs" / "Synthetic" / f"{CONFIGS[method][kind]}.yaml"), [*extra, *opts])


def _done(cfg) -> bool:
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "test_results.json"))


def _train_unless_done(cfg, train: bool) -> None:
    """Train ``cfg`` unless ``train`` is False or its OUTPUT_DIR already has test results."""
    from iared_video.engine.main_job import launch

    if train and not _done(cfg):
        launch(cfg, "tcp://localhost:9998")


def prepare_data(cfg, kind: str) -> None:
    """Generate the main job's synthetic set at its default folder if needed; use any other folder as it is."""
    from iared_video.engine.main_job import ensure_synthetic

    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if os.path.normpath(data_dir) == os.path.normpath(DATA_DIRS[kind]):
        ensure_synthetic(data_dir, kind == "image")
    elif not os.path.isdir(data_dir):
        raise FileNotFoundError(f"DATA.PATH_TO_DATA_DIR {data_dir} does not exist")


def train_kind(kind: str, out: str, opts: list[str], train: bool) -> dict:
    """Train (unless done or ``train`` is False) every method of ``kind``; returns method -> cfg."""
    from iared_video.engine.main_job import matched_drop_ratio, measured_keep_ratio, newest_checkpoint

    cfgs = {"dense": method_cfg("dense", kind, out, opts)}
    if train:
        prepare_data(cfgs["dense"], kind)
    run = functools.partial(_train_unless_done, train=train)
    run(cfgs["dense"])
    dense_ckpt = newest_checkpoint(cfgs["dense"].OUTPUT_DIR) if train else ""
    for method in ("iared", "dynamicvit"):
        cfgs[method] = method_cfg(method, kind, out, opts, dense_ckpt)
        run(cfgs[method])
    # the trained IA-RED^2 model's val keep ratio (also with --no-train: the baselines are rebuilt as trained)
    drop = matched_drop_ratio(measured_keep_ratio(cfgs["iared"]))
    for method in ("random", "attention", "temporal_diff"):
        if CONFIGS[method][kind] is not None:
            cfgs[method] = method_cfg(method, kind, out, opts, dense_ckpt, drop)
            run(cfgs[method])
    return cfgs


def load_trained(cfg) -> torch.nn.Module:
    from iared_video.engine.tester import load_test_weights
    from iared_video.models import build_model

    model = build_model(cfg)
    load_test_weights(model, "", cfg.OUTPUT_DIR)
    return model.eval()


def heatmap_scores(model, cfg, kind: str, max_samples: int) -> dict:
    """Segmentation scores of the model's last-stage policy scores (dense: uniform map) against the masks."""
    from eval_heatmaps import image_samples, video_samples

    from iared_video.interpret.heatmap import policy_heatmaps
    from iared_video.interpret.metrics import SegmentationMeter

    meter = SegmentationMeter(cfg.VISUALIZE.BINARIZE, cfg.VISUALIZE.BINARIZE_THRESHOLD)
    samples = video_samples(cfg, "val") if kind == "video" else image_samples(cfg, "val")
    for count, (x, mask, _, _) in enumerate(samples):
        if count >= max_samples:
            break
        with torch.no_grad():
            out = model(x[None], return_policy=True)
        acting = [j for j in range(model.num_groups) if model.policy.acts_on(j)] or [0]
        maps = policy_heatmaps([out.scores[acting[-1]]], out.grid, x.shape[-2:])[0, 0]
        meter.update(maps, mask.reshape(maps.shape))
    return meter.compute()


def measure(cfgs: dict, kind: str, max_samples: int, large_batch: int, iters: int) -> list[dict]:
    """Accuracy/GMACs from the test results, throughput vs dense at two batch sizes, heatmap scores."""
    from iared_video.utils.benchmark import throughput

    models = {m: load_trained(c) for m, c in cfgs.items()}
    size = cfgs["dense"].DATA.TEST_CROP_SIZE
    shape = (3, cfgs["dense"].DATA.NUM_FRAMES, size, size) if kind == "video" else (3, size, size)
    speed = {b: throughput(list(models.values()), torch.randn(b, *shape), 1, iters) for b in (1, large_batch)}
    rows = []
    for i, (method, cfg) in enumerate(cfgs.items()):
        with open(os.path.join(cfg.OUTPUT_DIR, "test_results.json")) as f:
            res = json.load(f)
        err = res.get("video1_err", res.get("top1_err"))
        rows.append({"kind": kind, "method": method, "accuracy": None if err is None else 100.0 - err,
                     "gmacs": res.get("gmacs_per_view"), "keep_ratio": res.get("keep_ratio"),
                     "throughput": speed[1][i]["throughput"], "speedup_b1": speed[1][i]["speedup"],
                     f"throughput_b{large_batch}": speed[large_batch][i]["throughput"],
                     f"speedup_b{large_batch}": speed[large_batch][i]["speedup"],
                     **heatmap_scores(models[method], cfg, kind, max_samples)})
    return rows


def write_outputs(rows: list[dict], out: str) -> None:
    from iared_video.utils.benchmark import format_table, save_json
    from iared_video.utils.plots import plot_series

    save_json({"rows": rows}, os.path.join(out, "head_to_head.json"))
    for x, name in (("gmacs", "pareto_gmacs.png"), ("throughput", "pareto_throughput.png")):
        for kind in sorted({r["kind"] for r in rows}):
            series = {r["method"]: [(r[x], r["accuracy"])] for r in rows if r["kind"] == kind}
            plot_series(series, x, "top-1 accuracy (%)", os.path.join(out, f"{kind}_{name}"),
                        f"{kind}: accuracy vs {x}")
    print(format_table(rows, columns=("kind", "method", "accuracy", "gmacs", "keep_ratio", "throughput",
                                      "speedup_b1", "miou", "map")))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="./output/head_to_head")
    parser.add_argument("--kinds", nargs="+", default=["video", "image"], choices=["video", "image"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every training stage")
    parser.add_argument("--quick", action="store_true", help="1 epoch, no per-epoch eval, 1 crop")
    parser.add_argument("--no-train", action="store_true", help="only read existing results")
    parser.add_argument("--max-samples", type=int, default=64, help="samples for heatmap scores")
    parser.add_argument("--large-batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every method")
    args = parser.parse_args(argv)
    opts = epoch_opts(args.epochs, args.quick) + list(args.opts)
    rows = []
    for kind in args.kinds:
        cfgs = train_kind(kind, args.out, opts, not args.no_train)
        rows += measure(cfgs, kind, args.max_samples, args.large_batch, args.iters)
    write_outputs(rows, args.out)
    return rows


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
