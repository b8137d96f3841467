"""Job entry points shared by ``tools/run_net.py`` and ``tools/main_job.py``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
from dataclasses import asdict
from typing import Sequence

from fvcore.common.config import CfgNode

from iared_video.engine import distributed as du
from iared_video.engine.logging import get_logger, setup_logging

__all__ = ["run_stages", "launch", "parse_args", "OPTIONAL_STAGES"]

logger = get_logger(__name__)

# Single-process stages run on the master after train/test: cfg section -> (module, function(cfg)).
OPTIONAL_STAGES = {
    "VISUALIZE": ("iared_video.visualization", "run_visualize"),
    "BENCHMARK": ("iared_video.utils.benchmark", "run_benchmark_from_cfg"),
}


def parse_args(argv: Sequence[str] | None = None, description: str = "IA-RED^2 train/test") -> argparse.Namespace:
    """PySlowFast-style arguments: ``--cfg``, ``--init_method``, ``--shard_id``, ``--num_shards``, then opts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="yaml config merged over the defaults")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="process-group rendezvous (tcp://host:port or file:///path) when not under torchrun")
    parser.add_argument("--shard_id", type=int, default=None, help="index of this machine (overrides SHARD_ID)")
    parser.add_argument("--num_shards", type=int, default=None, help="number of machines (overrides NUM_SHARDS)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs merged last")
    return parser.parse_args(argv)


def _run_optional(section: str, cfg: CfgNode, info: du.DistInfo) -> None:
    if info.rank != 0:
        return
    module_name, func_name = OPTIONAL_STAGES[section]
    getattr(importlib.import_module(module_name), func_name)(cfg)


def run_stages(info: du.DistInfo, cfg: CfgNode) -> None:
    """Run the enabled stages of ``cfg`` in this process: train, test, then visualise and benchmark."""
    from iared_video.engine.tester import test
    from iared_video.engine.trainer import train

    setup_logging(cfg.OUTPUT_DIR)
    logger.info("process %d/%d; config:\n%s", info.rank, info.world_size, cfg.dump())
    model = None
    if cfg.TRAIN.ENABLE:
        model = train(cfg, info)
    if cfg.TEST.ENABLE:
        test(cfg, info, model=model if not cfg.TEST.CHECKPOINT_FILE_PATH else None)
    for section in OPTIONAL_STAGES:
        if cfg[section].ENABLE:
            _run_optional(section, cfg, info)


def launch(cfg: CfgNode, init_method: str, func=run_stages) -> None:
    """Run ``func(info, cfg)`` in each of the job's processes (torchrun or spawned)."""
    from iared_video.engine.trainer import resolve_device

    backend = du.pick_backend(cfg.DIST_BACKEND, resolve_device(cfg.DEVICE).type == "cuda")
    num_local = 1 if du.under_torchrun() else cfg.NUM_GPUS
    du.launch_job(func, num_local, (cfg,), init_method, cfg.SHARD_ID, cfg.NUM_SHARDS, backend)


# ----------------------------------------------------------------------------- the README's main job

MAIN_JOB_CONFIGS = {
    "video": ("configs/Synthetic/tsf_tiny_dense.yaml", "configs/Synthetic/tsf_tiny_iared.yaml",
              "configs/Synthetic/tsf_tiny_random.yaml"),
    "image": ("configs/Synthetic/deit_tiny_dense.yaml", "configs/Synthetic/deit_tiny_iared.yaml",
              "configs/Synthetic/deit_tiny_random.yaml"),
}


#: Generator arguments of the main job's synthetic sets (see datasets/SYNTHETIC.md): the video defaults with
#: 2000 videos so that three training runs fit the two-core time budget; 3000 images of the easy preset in
#: 5 classes (one shape in 5 fill textures: the tiny ViT from scratch cannot tell the shapes apart).
SYNTHETIC_KWARGS = {
    "video": dict(num_videos=2000),
    "image": dict(num_images=3000, num_classes=5, difficulty="easy"),
}


def _meta_matches(data_dir: str, image: bool, seed: int, kwargs: dict) -> bool:
    """Whether ``data_dir/meta.json`` was written by the generator with ``seed`` and ``kwargs``."""
    from iared_video.datasets.synthetic import GENERATOR_NAME, GENERATOR_VERSION, ImageKnobs, VideoKnobs, make_knobs

    try:
        with open(os.path.join(data_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return True  # not a generated set (or no meta): use it as it is
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR_NAME:
        return True  # someone else's set: use it as it is, never regenerate (that deletes it)
    kwargs = dict(kwargs)
    count_key = "num_images" if image else "num_videos"
    count, classes = kwargs.pop(count_key, None), kwargs.pop("num_classes", None)
    difficulty = kwargs.pop("difficulty", "medium")
    knobs = make_knobs(ImageKnobs if image else VideoKnobs, difficulty, **kwargs)
    want = json.loads(json.dumps(asdict(knobs)))
    return (meta.get("version") == GENERATOR_VERSION and meta.get("seed") == seed
            and meta.get("difficulty") == difficulty and meta.get("knobs") == want
            and (count is None or meta.get(count_key) == count)
            and (classes is None or meta.get("num_classes") == classes))


def ensure_synthetic(data_dir: str, image: bool, seed: int = 0) -> None:
    """Generate the main job's synthetic set in ``data_dir`` unless it is there already (same recipe)."""
    kind = "image" if image else "video"
    kwargs = SYNTHETIC_KWARGS[kind]
    marker = os.path.join(data_dir, "train" if image else "train.csv")
    if os.path.exists(marker):
        if _meta_matches(data_dir, image, seed, kwargs):
            logger.info("using the synthetic %s set in %s", kind, data_dir)
            return
        logger.warning("the synthetic %s set in %s was made with another recipe: deleting and regenerating it",
                       kind, data_dir)
        shutil.rmtree(data_dir)  # only generated sets get here (see _meta_matches); stale class folders would stay
    from iared_video.datasets.synthetic import generate_image_dataset, generate_video_dataset

    logger.info("generating the synthetic %s set in %s (%s)", kind, data_dir, kwargs)
    (generate_image_dataset if image else generate_video_dataset)(data_dir, seed=seed, num_workers=2, **kwargs)


def measured_keep_ratio(cfg: CfgNode) -> float:
    """Mean keep ratio of ``cfg``'s newest checkpoint on the val split (all groups greedy)."""
    from iared_video.datasets import construct_loader
    from iared_video.engine.tester import load_test_weights
    from iared_video.engine.trainer import eval_epoch, resolve_device
    from iared_video.models import build_model

    device = resolve_device(cfg.DEVICE)
    model = build_model(cfg).to(device)
    load_test_weights(model, "", cfg.OUTPUT_DIR)
    stats = eval_epoch(model, construct_loader(cfg, "val"), ["greedy"] * model.num_groups, device)
    return float(stats["keep_ratio"])


def matched_drop_ratio(keep_ratio: float) -> float:
    """Drop ratio of a fixed-ratio baseline matched to IA-RED^2's keep ratio (clamped to [0, 0.95])."""
    return min(max(1.0 - keep_ratio, 0.0), 0.95)


def newest_checkpoint(output_dir: str) -> str:
    from iared_video.engine.checkpoint import load_newest_valid

    found = load_newest_valid(output_dir)
    if found is None:
        raise FileNotFoundError(f"no valid checkpoint in {output_dir}/checkpoints")
    return found[0]


def measured_throughput(cfgs: Sequence[CfgNode], iters: int = 3) -> list[dict[str, float]]:
    """Throughput of each cfg's trained model over the whole test split, timed interleaved in one process.

    The test pass's own clips/s runs beside the loader's decoding workers and is not comparable across runs.
    Here every test view is decoded once into memory, then for each batch the models run in rotating order
    (``iters`` timed runs after one warm-up); a model's time is the sum over batches of its median.
    """
    from iared_video.engine.tester import load_test_weights
    from iared_video.models import build_model
    from iared_video.utils.benchmark import Variant, eval_batches, time_interleaved

    variants = []
    for i, cfg in enumerate(cfgs):
        model = build_model(cfg).eval()
        load_test_weights(model, "", cfg.OUTPUT_DIR)
        variants.append(Variant(str(i), model, ""))
    batches = eval_batches(cfgs[0], cfgs[0].TEST.SPLIT, num_batches=0, batch=cfgs[0].TEST.BATCH_SIZE)
    seconds = [0.0] * len(cfgs)
    for inputs, _ in batches:
        times = time_interleaved(variants, inputs, "fp32", warmup=1, iters=iters)
        for i, v in enumerate(variants):
            seconds[i] += statistics.median(times[v.name])
    views = sum(len(inputs) for inputs, _ in batches)
    return [{"throughput": views / t, "speedup": seconds[0] / t} for t in seconds]


def _row(method: str, results: dict, speed: dict[str, float], video: bool) -> dict:
    row = {"method": method, "keep_ratio": results["keep_ratio"], "gmacs_per_view": results["gmacs_per_view"]}
    if video:
        row.update(clip1_err=results["clip1_err"], video1_err=results["video1_err"], clips_per_s=speed["throughput"])
    else:
        row.update(top1_err=results["top1_err"], top5_err=results["top5_err"], images_per_s=speed["throughput"])
    row["speedup"] = speed["speedup"]
    return row


def run_main_job(data_dir: str, output_dir: str, image: bool = False, opts: Sequence[str] = (),
                 init_method: str = "tcp://localhost:9999") -> list[dict]:
    """Dense -> IA-RED^2 (from the dense weights) -> random baseline at the IA-RED^2 keep ratio; test all three.

    Returns the table rows; also writes ``output_dir/main_job_results.json``.
    """
    from iared_video.config import load_config
    from iared_video.utils.benchmark import format_table

    kind = "image" if image else "video"
    setup_logging(output_dir)
    ensure_synthetic(data_dir, image)
    dense_cfg, iared_cfg, random_cfg = MAIN_JOB_CONFIGS[kind]
    common = ["DATA.PATH_TO_DATA_DIR", data_dir, *opts]
    dense = load_config(dense_cfg, [*common, "OUTPUT_DIR", os.path.join(output_dir, "dense")])
    launch(dense, init_method)
    dense_ckpt = newest_checkpoint(dense.OUTPUT_DIR)
    iared = load_config(iared_cfg, [*common, "OUTPUT_DIR", os.path.join(output_dir, "iared"),
                                    "TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt])
    launch(iared, init_method)
    keep = measured_keep_ratio(iared)
    drop = matched_drop_ratio(keep)
    logger.info("IA-RED^2 keeps %.3f of the tokens on val: random baseline drops %.3f", keep, drop)
    rand = load_config(random_cfg, [*common, "OUTPUT_DIR", os.path.join(output_dir, "random"),
                                    "TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt, "IARED.DROP_RATIO", repr(drop)])
    launch(rand, init_method)
    runs = (("dense", dense), ("ia-red2", iared), ("random", rand))
    speeds = measured_throughput([cfg for _, cfg in runs])
    rows = []
    for (method, cfg), speed in zip(runs, speeds):
        with open(os.path.join(cfg.OUTPUT_DIR, "test_results.json")) as f:
            rows.append(_row(method, json.load(f), speed, not image))
    setup_logging(output_dir)
    with open(os.path.join(output_dir, "main_job_results.json"), "w") as f:
        json.dump({"kind": kind, "random_drop_ratio": drop, "rows": rows}, f, indent=2)
    logger.info("main job (%s):\n%s", kind, format_table(rows, columns=list(rows[0])))
    return rows
