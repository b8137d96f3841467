"""Job entry points shared by ``tools/run_net.py`` and ``tools/main_job.py``."""

from __future__ import annotations

import argparse
import importlib
import json
import math
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

#: The paper's fixed-ratio baselines run by the main job, each at IA-RED^2's GMACs (the baseline config with
#: ``IARED.POLICY`` set to the name); temporal difference needs frames.
BASELINES = {"video": ("random", "attention", "temporal_diff"), "image": ("random", "attention")}

#: Generator arguments of the main job's synthetic sets (see datasets/SYNTHETIC.md): the video defaults with
#: 2000 videos so that three training runs fit the two-core time budget; 3000 images of the easy preset in
#: 5 classes (one shape in 5 fill textures: the tiny ViT from scratch cannot tell the shapes apart).
SYNTHETIC_KWARGS = {
    "video": dict(num_videos=2000),
    "image": dict(num_images=3000, num_classes=5, difficulty="easy"),
}

#: Options that turn the dense stage into the from-scratch control: no pre-trained weights, and the embedding
#: initialisation that lets a ViT learn these sets from scratch (datasets/SYNTHETIC.md).
FROM_SCRATCH_OPTS = {
    "video": ["MODEL.PRETRAINED", "", "MODEL.POS_EMBED_INIT_STD", "1.0", "MODEL.TIME_EMBED_INIT_STD", "1.0"],
    "image": ["MODEL.PRETRAINED", "", "MODEL.POS_EMBED_INIT_STD", "1.0"],
}


def _meta_matches(data_dir: str, image: bool, seed: int, kwargs: dict) -> bool:
    """Whether ``data_dir/meta.json`` was written by the generator with ``seed`` and ``kwargs``."""
    from iared_video.synthetic import GENERATOR_NAME, GENERATOR_VERSION, ImageKnobs, VideoKnobs, make_knobs

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
    from iared_video.synthetic import generate_image_dataset, generate_video_dataset

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


def fixed_ratio_gmacs(cfg: CfgNode, drop_ratio: float) -> float:
    """GMACs per view of ``cfg``'s fixed-ratio model at ``drop_ratio`` (token counts do not depend on the input)."""
    import torch

    from iared_video.models import build_model
    from iared_video.models.flops import model_gmacs_per_sample
    from iared_video.utils.benchmark import make_input

    cfg = cfg.clone()
    cfg.defrost()
    cfg.IARED.DROP_RATIO, cfg.MODEL.PRETRAINED = float(drop_ratio), ""
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(make_input(cfg, 1, torch.Generator().manual_seed(0)), return_policy=True)
    return float(model_gmacs_per_sample(model, out)[0])


def matched_gmacs_drop_ratio(cfg: CfgNode, target_gmacs: float, steps: int = 12) -> float:
    """Drop ratio in [0, 0.95] at which ``cfg``'s fixed-ratio baseline costs ``target_gmacs`` (bisection).

    Cost falls monotonically with the drop ratio; token counts are integers, so the match is to one token.
    """
    low, high = 0.0, 0.95
    if fixed_ratio_gmacs(cfg, high) >= target_gmacs:
        return high
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if fixed_ratio_gmacs(cfg, mid) > target_gmacs else (low, mid)
    return high


def wilson_interval(errors: float, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval (percent) of an error rate given in percent over ``total`` trials."""
    if total <= 0:
        return float("nan"), float("nan")
    p = errors / 100.0
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return 100.0 * max(centre - half, 0.0), 100.0 * min(centre + half, 1.0)


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


def _interval(results: dict, key: str, count_key: str) -> str:
    low, high = wilson_interval(results[key], int(results.get(count_key, 0)))
    return f"{low:.1f}-{high:.1f}"


def _row(method: str, results: dict, speed: dict[str, float], video: bool) -> dict:
    row = {"method": method, "keep_ratio": results["keep_ratio"], "gmacs_per_view": results["gmacs_per_view"]}
    if video:
        row.update(clip1_err=results["clip1_err"], clip1_ci95=_interval(results, "clip1_err", "num_clip1_scored"),
                   video1_err=results["video1_err"],
                   video1_ci95=_interval(results, "video1_err", "num_videos_scored"),
                   clips_per_s=speed["throughput"])
    else:
        row.update(top1_err=results["top1_err"], top1_ci95=_interval(results, "top1_err", "num_images"),
                   images_per_s=speed["throughput"])
    row["speedup"] = speed["speedup"]
    return row


def _stage(cfg_path: str, common: Sequence[str], output_dir: str, extra: Sequence[str],
           init_method: str) -> CfgNode:
    """Load ``cfg_path`` with the shared and stage options, run it (train + test), return its config."""
    from iared_video.config import load_config

    cfg = load_config(cfg_path, [*common, *extra, "OUTPUT_DIR", output_dir])
    launch(cfg, init_method)
    return cfg


def _reduction_stages(kind: str, common: Sequence[str], output_dir: str, dense_ckpt: str, drops: dict[str, float],
                      init_method: str) -> list[tuple[str, CfgNode]]:
    """IA-RED^2 from the dense weights, then each baseline at IA-RED^2's GMACs (drop ratios into ``drops``)."""
    from iared_video.config import load_config

    _, iared_cfg, baseline_cfg = MAIN_JOB_CONFIGS[kind]
    start = ["TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt]
    runs = [("ia-red2", _stage(iared_cfg, common, os.path.join(output_dir, "iared"), start, init_method))]
    with open(os.path.join(runs[0][1].OUTPUT_DIR, "test_results.json")) as f:
        target = float(json.load(f)["gmacs_per_view"])
    for policy in BASELINES[kind]:
        probe = load_config(baseline_cfg, [*common, "IARED.POLICY", policy])
        drops[policy] = matched_gmacs_drop_ratio(probe, target)
        logger.info("%s baseline at IA-RED^2's %.4f GMACs: drop ratio %.3f", policy, target, drops[policy])
        extra = [*start, "IARED.POLICY", policy, "IARED.DROP_RATIO", repr(drops[policy])]
        runs.append((policy, _stage(baseline_cfg, common, os.path.join(output_dir, policy), extra, init_method)))
    return runs


def run_main_job(data_dir: str, output_dir: str, image: bool = False, opts: Sequence[str] = (),
                 init_method: str = "tcp://localhost:9999", from_scratch: bool = False) -> list[dict]:
    """Dense (from the pre-trained weights) -> IA-RED^2 (from the dense weights) -> the paper's fixed-ratio
    baselines at IA-RED^2's GMACs; test all, time all interleaved in one process, one table.

    Args:
        from_scratch: the control of "pre-training helps": the dense stage alone, without pre-trained weights.

    Returns the table rows; also writes ``output_dir/main_job_results.json``.
    """
    from iared_video.utils.benchmark import format_table

    kind = "image" if image else "video"
    setup_logging(output_dir)
    ensure_synthetic(data_dir, image)
    dense_cfg = MAIN_JOB_CONFIGS[kind][0]
    common = ["DATA.PATH_TO_DATA_DIR", data_dir, *opts]
    dense_opts = FROM_SCRATCH_OPTS[kind] if from_scratch else []
    runs = [("dense", _stage(dense_cfg, common, os.path.join(output_dir, "dense"), dense_opts, init_method))]
    drops: dict[str, float] = {}
    if not from_scratch:
        runs += _reduction_stages(kind, common, output_dir, newest_checkpoint(runs[0][1].OUTPUT_DIR), drops,
                                  init_method)
    speeds = measured_throughput([cfg for _, cfg in runs])
    rows = []
    for (method, cfg), speed in zip(runs, speeds):
        with open(os.path.join(cfg.OUTPUT_DIR, "test_results.json")) as f:
            rows.append(_row(method, json.load(f), speed, not image))
    setup_logging(output_dir)
    with open(os.path.join(output_dir, "main_job_results.json"), "w") as f:
        json.dump({"kind": kind, "from_scratch": from_scratch, "drop_ratios": drops, "rows": rows}, f, indent=2)
    logger.info("main job (%s%s):\n%s", kind, ", dense from scratch" if from_scratch else "",
                format_table(rows, columns=list(rows[0])))
    return rows
