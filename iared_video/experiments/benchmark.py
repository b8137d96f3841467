"""Throughput of dense vs IA-RED^2 vs the methods at keep targets, with ideal (GMACs) speed-ups and efficiency.

Examples:
    python tools/benchmark.py --preset deit_s --batch-sizes 1 16 --keep-ratios 0.5 0.7 --out bench.json
    python tools/benchmark.py --preset tsf --batch-sizes 1 4 --iters 5 --out tsf.json
    python tools/benchmark.py --preset tsf_divst --batch-sizes 1 8 --keep-ratios 0.5 0.7 --out tsf_divst.json
    python tools/benchmark.py --preset deit_s --cpu-linear onednn --batch-sizes 1 16 --out deit_s_onednn.json
    python tools/benchmark.py --cfg configs/IN1k/deit_b.yaml --precisions fp32 bf16 DATA.TEST_CROP_SIZE 384

The presets and the command line of ``tools/benchmark.py``; the harness itself is
``iared_video.engine.benchmark`` (also the ``BENCHMARK.ENABLE`` stage of ``tools/run_net.py``).
"""

from __future__ import annotations

import argparse
import logging

import torch
from fvcore.common.config import CfgNode

from iared_video.config.choices import CPU_LINEARS, KEEP_SCHEDULES, PRECISIONS
from iared_video.config.defaults import get_defaults
from iared_video.engine.benchmark import BenchSettings, benchmark_table, keep_target_methods, run_benchmark
from iared_video.methods import load_config
from iared_video.utils.results import BenchmarkResults, save_json

__all__ = ["PRESETS", "add_model_args", "cfg_from_args", "main"]

PRESETS: dict[str, list[str]] = {
    "deit_s": ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_small_patch16_224", "MODEL.NUM_CLASSES", "1000",
               "IARED.NUM_GROUPS", "3", "DATA.TRAIN_CROP_SIZE", "224", "DATA.TEST_CROP_SIZE", "224"],
    "deit_b": ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_base_patch16_224", "MODEL.NUM_CLASSES", "1000",
               "IARED.NUM_GROUPS", "3"],
    "tsf": [],  # the defaults: JointST TimeSformer-B, 8x224, K400
    "tsf_divst": ["MODEL.ATTENTION_TYPE", "divided_space_time"],  # divST TimeSformer-B 8x224 (released checkpoints)
}

def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg``, ``--preset``, ``--device``, ``--threads`` and trailing ``KEY VALUE`` opts."""
    parser.add_argument("--cfg", default=None, help="yaml config (merged over the defaults)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="deit_s: DeiT-S 224, D=3; deit_b: DeiT-B, D=3; tsf: JointST TimeSformer 8x224; "
                             "tsf_divst: divided space-time TimeSformer 8x224")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")


def cfg_from_args(args: argparse.Namespace) -> CfgNode:
    """Config from ``--preset`` opts, then ``--cfg``, then the trailing opts."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_config(args.cfg, PRESETS.get(args.preset or "", []) + list(args.opts or []))


def main(argv: list[str] | None = None) -> BenchmarkResults:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    b = get_defaults().BENCHMARK  # every default is the BENCHMARK section's
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(b.BATCH_SIZES))
    parser.add_argument("--precisions", nargs="+", default=list(b.PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--warmup", type=int, default=b.WARMUP_ITERS)
    parser.add_argument("--iters", type=int, default=b.NUM_ITERS, help="timed iterations per variant (interleaved)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=list(b.THRESHOLDS),
                        help="IA-RED^2 thresholds as they are")
    parser.add_argument("--keep-ratios", type=float, nargs="*", default=list(b.KEEP_RATIOS),
                        help="controlled-keep targets r (per sample U[r-spread, r+spread])")
    parser.add_argument("--keep-spread", type=float, default=b.KEEP_SPREAD)
    parser.add_argument("--keep-schedule", choices=KEEP_SCHEDULES, default=b.KEEP_SCHEDULE)
    parser.add_argument("--methods-at-keep", nargs="*", default=list(b.METHODS_AT_KEEP), choices=keep_target_methods(),
                        help="methods also timed at each keep target (fixed-ratio baselines, DynamicViT, ToMe, EViT)")
    parser.add_argument("--data-split", default=b.DATA_SPLIT, help="use the first batch of this split instead of noise")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--cpu-linear", choices=CPU_LINEARS, default=b.CPU_LINEAR,
                        help="CPU fp32 linear layers: torch's default BLAS or oneDNN for every variant "
                             "(adds an aten dense row; ratios stay against the oneDNN dense model)")
    parser.add_argument("--out", default=None, help="JSON output path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = cfg_from_args(args)
    settings = BenchSettings(batch_sizes=args.batch_sizes, precisions=args.precisions, warmup=args.warmup,
                             iters=args.iters, thresholds=args.thresholds, keep_ratios=args.keep_ratios,
                             keep_spread=args.keep_spread, keep_schedule=args.keep_schedule,
                             methods_at_keep=args.methods_at_keep, data_split=args.data_split,
                             seed=cfg.RNG_SEED, measure_memory=not args.no_memory,
                             cpu_linear=args.cpu_linear)
    results = run_benchmark(cfg, settings, args.device)
    print(benchmark_table(results.rows, results.unit))
    print(f"environment: {results.environment}")
    if args.out:
        save_json(results, args.out)
        print(f"wrote {args.out}")
    return results
