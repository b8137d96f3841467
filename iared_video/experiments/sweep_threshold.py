"""IA-RED^2 threshold / tau sweep: accuracy, GMACs per sample and throughput per threshold (table, JSON, PNG).

Examples:
    python tools/sweep_threshold.py --cfg configs/IN1k/deit_s.yaml --data-split val --out-dir out/sweep \
        MODEL.PRETRAINED ckpt.pyth
    python tools/sweep_threshold.py --cfg configs/IN1k/deit_s.yaml --data-split val --out-dir out/tau \
        --checkpoints tau0.5.pyth tau1.5.pyth --thresholds 0.5
Without ``--data-split`` the input is generated and "accuracy" is top-1 agreement with the dense model.
tau (``IARED.TAU``, the reward of a wrong prediction) acts in training, so its trade-off (the paper's Table 8)
needs one trained model per tau: ``--checkpoints`` sweeps the thresholds of each and labels its rows with the
tau stored in the checkpoint's config (``--taus`` gives them for checkpoints without one).
"""

from __future__ import annotations

import argparse
from typing import cast

import numpy as np
import yaml
from fvcore.common.config import CfgNode

from iared_video.experiments.benchmark import add_model_args, cfg_from_args
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
from iared_video.models.weights import load_checkpoint_file, load_pretrained

DEFAULT_THRESHOLDS = sorted(set(np.round(np.concatenate([np.arange(0.48, 0.525, 0.01), np.arange(0.3, 0.75, 0.1)]),
                                         3).tolist()))


def sweep(model: PolicyModel, thresholds: list[float], batches: list, iters: int, method: str = "iared") -> list[dict]:
    """One row per threshold plus the dense row; accuracy against labels or the dense predictions."""
    dense = dense_of(model)
    dense_eval = evaluate(dense, batches)
    reference = None if batches[0][1] is not None else dense_eval["predictions"]
    dense_eval = evaluate(dense, batches, reference)
    models = [with_threshold(model, t) for t in thresholds]
    evals = [evaluate(m, batches, reference) for m in models]
    speeds = throughput([dense] + models, batches[0][0], iters=iters)
    rows = [{"method": "dense", "threshold": None, **_strip(dense_eval), **speeds[0]}]
    rows += [{"method": method, "threshold": t, **_strip(e), **s} for t, e, s in zip(thresholds, evals, speeds[1:])]
    return rows


def checkpoint_tau(path: str) -> float | None:
    """``IARED.TAU`` of the config stored in one of our checkpoints; None when it holds no config."""
    dump = load_checkpoint_file(path).get("cfg")
    if not isinstance(dump, str):
        return None
    tau = ((yaml.safe_load(dump) or {}).get("IARED") or {}).get("TAU")
    return None if tau is None else float(tau)


def tau_sweep(cfg: CfgNode, checkpoints: list[str], taus: list[float | None], thresholds: list[float],
              batches: list, iters: int) -> list[dict]:
    """``sweep`` of each checkpoint (one trained model per tau), rows labelled with its ``tau`` and path."""
    node = cfg.clone()
    node.defrost()
    node.MODEL.PRETRAINED = ""  # each checkpoint is loaded below instead
    rows = []
    for path, tau in zip(checkpoints, taus):
        model = cast(PolicyModel, build_model(node).eval())  # an IA-RED^2 checkpoint
        load_pretrained(model, path)
        method = "iared" if tau is None else f"iared@tau={tau:g}"
        rows += [{**r, "tau": tau, "checkpoint": path} for r in sweep(model, thresholds, batches, iters, method)]
    return rows


def _taus_of(checkpoints: list[str], given: list[float]) -> list[float | None]:
    """``given`` when set (one per checkpoint), else the tau stored in each checkpoint."""
    if given and len(given) != len(checkpoints):
        raise SystemExit(f"--taus needs one value per checkpoint ({len(checkpoints)}), got {len(given)}")
    return list(given) if given else [checkpoint_tau(path) for path in checkpoints]


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "predictions"}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_eval_args(parser)
    parser.add_argument("--thresholds", type=float, nargs="+", default=DEFAULT_THRESHOLDS)
    parser.add_argument("--checkpoints", nargs="+", default=[],
                        help="trained models to sweep, e.g. one per IARED.TAU (default: the cfg's model)")
    parser.add_argument("--taus", type=float, nargs="+", default=[],
                        help="tau of each --checkpoints entry (default: read from each checkpoint's config)")
    args = parser.parse_args(argv)
    cfg = cfg_from_args(args)
    batches = eval_batches(cfg, args.data_split, args.num_batches, args.batch_size, cfg.RNG_SEED)
    if args.checkpoints:
        taus = _taus_of(args.checkpoints, args.taus)
        rows = tau_sweep(cfg, args.checkpoints, taus, args.thresholds, batches, args.iters)
    else:
        rows = sweep(cast(PolicyModel, build_model(cfg).eval()), args.thresholds, batches, args.iters)
    write_outputs(rows, args.out_dir, "sweep_threshold", meta={"data": args.data_split or "generated"})
    return rows

