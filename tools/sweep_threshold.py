#!/usr/bin/env python
"""IA-RED^2 threshold sweep: accuracy, GMACs per sample and throughput per threshold (table, JSON, PNG).

Example:
    python tools/sweep_threshold.py --cfg configs/IN1k/deit_s.yaml --data-split val --out-dir out/sweep \
        MODEL.PRETRAINED ckpt.pyth
Without ``--data-split`` the input is generated and "accuracy" is top-1 agreement with the dense model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmark import add_model_args, cfg_from_args  # noqa: E402
from iared_video.models import IARED, build_model  # noqa: E402
from iared_video.utils.benchmark import (dense_of, eval_batches, evaluate, format_table, save_json, throughput,  # noqa: E402
                                         with_threshold)
from iared_video.utils.plots import plot_series  # noqa: E402

DEFAULT_THRESHOLDS = sorted(set(np.round(np.concatenate([np.arange(0.48, 0.525, 0.01), np.arange(0.3, 0.75, 0.1)]),
                                         3).tolist()))
COLUMNS = ("method", "groups", "threshold", "sparsity", "scope", "accuracy", "gmacs", "linear_gmacs",
           "linear_reduction", "keep_ratio", "throughput", "speedup")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-split", default="", help="split for accuracy (default: generated input)")
    parser.add_argument("--num-batches", type=int, default=2, help="batches evaluated (0: the whole split)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (throughput)")
    parser.add_argument("--out-dir", default="./output/sweep")


def sweep(model: IARED, thresholds: list[float], batches: list, iters: int, method: str = "iared") -> list[dict]:
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


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "predictions"}


def write_outputs(rows: list[dict], out_dir: str, name: str, x: str = "gmacs", meta: dict | None = None) -> None:
    """Table on stdout, ``name.json`` and ``name.png`` (accuracy vs ``x`` per method) in ``out_dir``."""
    print(format_table(rows, columns=COLUMNS))
    save_json({"rows": rows, **(meta or {})}, str(Path(out_dir) / f"{name}.json"))
    series: dict[str, list] = {}
    labels: dict[str, list] = {}
    for r in rows:
        series.setdefault(r["method"], []).append((r.get(x), r.get("accuracy")))
        labels.setdefault(r["method"], []).append(_label(r))
    ylabel = "top-1 accuracy (%)" if meta is None or meta.get("data", "") != "generated" else "top-1 agreement with dense (%)"
    plot_series(series, x, ylabel, str(Path(out_dir) / f"{name}.png"), name, labels)
    print(f"wrote {out_dir}/{name}.json and {name}.png")


def _label(row: dict) -> str:
    for key in ("threshold", "sparsity", "groups"):
        if row.get(key) is not None:
            return f"{row[key]:g}"
    return ""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_eval_args(parser)
    parser.add_argument("--thresholds", type=float, nargs="+", default=DEFAULT_THRESHOLDS)
    args = parser.parse_args(argv)
    cfg = cfg_from_args(args)
    model = build_model(cfg).eval()
    batches = eval_batches(cfg, args.data_split, args.num_batches, args.batch_size, cfg.RNG_SEED)
    rows = sweep(model, args.thresholds, batches, args.iters)
    write_outputs(rows, args.out_dir, "sweep_threshold", meta={"data": args.data_split or "generated"})
    return rows


if __name__ == "__main__":
    main()
