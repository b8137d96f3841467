"""D (number of groups) at similar GMACs: per D, pick the threshold whose GMACs are nearest the target.

Example (one config/checkpoint per D; trailing opts apply to all):
    python tools/sweep_groups.py --cfg configs/IN1k/deit_s.yaml --groups 2 3 4 \
        --checkpoints d2.pyth d3.pyth d4.pyth --target-gmacs 3.0 --data-split val
``--cfgs`` gives one yaml per D instead (D is then read from each).
"""

from __future__ import annotations

import argparse
from typing import Any, cast

import numpy as np

from iared_video.experiments.benchmark import add_model_args, preset_config
from iared_video.experiments.tradeoff import (
    add_eval_args,
    dense_of,
    eval_batches,
    evaluate,
    throughput,
    with_threshold,
    write_outputs,
)
from iared_video.methods import build_model
from iared_video.models import PolicyModel


def run_configs(args: argparse.Namespace) -> list:
    """One config per run: ``--cfgs`` (one yaml each) or ``--cfg`` with each ``--groups`` value."""
    opts = list(args.opts or [])
    if args.cfgs:
        cfgs = [preset_config(args.preset, path, opts) for path in args.cfgs]
    else:
        cfgs = [preset_config(args.preset, args.cfg, opts + ["IARED.NUM_GROUPS", str(d)]) for d in args.groups]
    ckpts = args.checkpoints or [""] * len(cfgs)
    if len(ckpts) != len(cfgs):
        raise SystemExit(f"{len(ckpts)} checkpoints for {len(cfgs)} runs")
    out = []
    for cfg, ckpt in zip(cfgs, ckpts):
        if ckpt:
            cfg.defrost()
            cfg.MODEL.PRETRAINED = ckpt
            cfg.freeze()
        out.append(cfg)
    return out


def calibrate(model: PolicyModel, batches: list, target: float, grid: np.ndarray) -> tuple[float, dict]:
    """The grid threshold whose mean GMACs per sample is nearest ``target`` (on the first batch)."""
    best: tuple[float, dict[str, Any]] | None = None
    for t in grid:
        result = evaluate(with_threshold(model, float(t)), batches[:1])
        if best is None or abs(result["gmacs"] - target) < abs(best[1]["gmacs"] - target):
            best = (float(t), result)
    assert best is not None  # the grid is not empty
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_eval_args(parser)
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--cfgs", nargs="*", default=[], help="one yaml per run (instead of --groups)")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="one checkpoint per run")
    parser.add_argument("--target-gmacs", type=float, default=0.0, help="0: use each config's threshold")
    args = parser.parse_args(argv)
    rows, grid = [], np.round(np.arange(0.30, 0.701, 0.01), 3)
    for cfg in run_configs(args):
        model = cast(PolicyModel, build_model(cfg).eval())
        batches = eval_batches(cfg, args.data_split, args.num_batches, args.batch_size, cfg.RNG_SEED)
        dense = dense_of(model)
        reference = None if batches[0][1] is not None else evaluate(dense, batches)["predictions"]
        threshold = cfg.IARED.THRESHOLD
        if args.target_gmacs:
            threshold, _ = calibrate(model, batches, args.target_gmacs, grid)
        tuned = with_threshold(model, threshold)
        result = {k: v for k, v in evaluate(tuned, batches, reference).items() if k != "predictions"}
        speed = throughput([dense, tuned], batches[0][0], iters=args.iters)[1]
        rows.append({"method": "iared", "groups": model.num_groups, "threshold": threshold, **result, **speed})
    write_outputs(rows, args.out_dir, "sweep_groups", meta={"target_gmacs": args.target_gmacs})
    return rows

