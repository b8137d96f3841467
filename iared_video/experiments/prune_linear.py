"""Magnitude pruning of linear layers, alone and with token dropping (paper Fig. 5).

x: reduction of the linear layers' MACs (non-zero weights x tokens through each layer); y: accuracy.
Example:
    python tools/prune_linear.py --cfg configs/IN1k/deit_s.yaml --data-split val --sparsities 0 0.2 0.4 0.6 \
        --threshold 0.5 MODEL.PRETRAINED ckpt.pyth
"""

from __future__ import annotations

import argparse
import copy
from typing import cast

from iared_video.experiments.benchmark import add_model_args, cfg_from_args
from iared_video.experiments.tradeoff import (
    add_eval_args,
    dense_of,
    eval_batches,
    evaluate,
    with_threshold,
    write_outputs,
)
from iared_video.methods import build_model
from iared_video.models import PolicyModel
from iared_video.utils.pruning import count_linear_macs, magnitude_prune, prunable_linears


def measure(model: PolicyModel, batches: list, reference: list | None) -> dict:
    """Accuracy, GMACs, keep ratio and the non-zero linear GMACs per sample."""
    layers = prunable_linears(model, include_policy=True)
    with count_linear_macs(layers) as totals:
        result = evaluate(model, batches, reference)
    num = sum(x.shape[0] for x, _ in batches)
    result.pop("predictions")
    return {**result, "linear_gmacs": totals["macs"] / num / 1e9}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_eval_args(parser)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--scope", choices=["global", "layer"], default="global")
    parser.add_argument("--threshold", type=float, default=None, help="token-drop threshold (default: cfg's)")
    args = parser.parse_args(argv)
    cfg = cfg_from_args(args)
    base = cast(PolicyModel, build_model(cfg).eval())
    batches = eval_batches(cfg, args.data_split, args.num_batches, args.batch_size, cfg.RNG_SEED)
    dense0 = dense_of(base)
    reference = None if batches[0][1] is not None else evaluate(dense0, batches)["predictions"]
    dense_linear = measure(dense0, batches, reference)["linear_gmacs"]
    threshold = cfg.IARED.THRESHOLD if args.threshold is None else args.threshold
    rows = []
    for amount in args.sparsities:
        pruned = copy.deepcopy(base)
        magnitude_prune(prunable_linears(pruned), amount, args.scope)  # backbone linears, not the interpreter
        for method, model in (("weight pruning", dense_of(pruned)),
                              ("weight pruning + token drop", with_threshold(pruned, threshold))):
            row = {"method": method, "sparsity": amount, "scope": args.scope, "threshold": threshold,
                   **measure(model, batches, reference)}
            row["linear_reduction"] = 1.0 - row["linear_gmacs"] / dense_linear
            rows.append(row)
    write_outputs(rows, args.out_dir, "prune_linear", x="linear_reduction",
                  meta={"data": args.data_split or "generated", "dense_linear_gmacs": dense_linear})
    return rows

