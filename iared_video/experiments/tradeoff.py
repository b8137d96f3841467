"""The trade-off studies' shared pieces: evaluation batches, accuracy/GMACs/keep per model, interleaved
throughput, the dense and re-thresholded views of one trained model, and the sweep tools' common options
and outputs (table, JSON, plot)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.engine.benchmark import Variant, make_input, split_batches, time_interleaved
from iared_video.experiments.pareto import AXIS_LABELS
from iared_video.methods import model_gmacs_per_sample
from iared_video.methods.iared import threshold_policy
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models.policies import NoDropPolicy
from iared_video.models.policy_model import PolicyModel
from iared_video.utils.plots import plot_series
from iared_video.utils.results import format_table, save_json

__all__ = ["Batch", "eval_batches", "evaluate", "throughput", "dense_of", "with_threshold", "add_eval_args",
           "write_outputs", "SWEEP_COLUMNS"]

SWEEP_COLUMNS = ("method", "groups", "tau", "threshold", "sparsity", "scope", "accuracy", "gmacs", "linear_gmacs",
                 "linear_reduction", "keep_ratio", "throughput", "speedup")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """What the sweeps evaluate on: split, batches, timed iterations, output folder."""
    parser.add_argument("--data-split", default="", help="split for accuracy (default: generated input)")
    parser.add_argument("--num-batches", type=int, default=2, help="batches evaluated (0: the whole split)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (throughput)")
    parser.add_argument("--out-dir", default="./output/sweep")


#: Axis labels of the sweep plots' x keys (a key not listed is its own label).
X_LABELS = {**AXIS_LABELS, "linear_reduction": "fraction of linear-layer MACs removed"}


def write_outputs(rows: list[dict], out_dir: str, name: str, x: str = "gmacs", meta: dict | None = None) -> None:
    """Table on stdout, ``name.json`` and ``name.png`` (accuracy vs ``x`` per method) in ``out_dir``."""
    print(format_table(rows, columns=SWEEP_COLUMNS))
    save_json({"rows": rows, **(meta or {})}, str(Path(out_dir) / f"{name}.json"))
    series: dict[str, list] = {}
    labels: dict[str, list] = {}
    for r in rows:
        series.setdefault(r["method"], []).append((r.get(x), r.get("accuracy")))
        labels.setdefault(r["method"], []).append(_label(r))
    generated = meta is not None and meta.get("data", "") == "generated"
    ylabel = "top-1 agreement with dense (%)" if generated else "top-1 accuracy (%)"
    plot_series(series, X_LABELS.get(x, x), ylabel, str(Path(out_dir) / f"{name}.png"), name, labels)
    print(f"wrote {out_dir}/{name}.json and {name}.png")


def _label(row: dict) -> str:
    for key in ("threshold", "sparsity", "groups", "tau"):
        if row.get(key) is not None:
            return f"{row[key]:g}"
    return ""


Batch = tuple[Tensor, Tensor | None]


def eval_batches(cfg: CfgNode, split: str = "", num_batches: int = 2, batch: int = 8, seed: int = 0) -> list[Batch]:
    """``(inputs, labels)`` batches: the first ``num_batches`` of ``split`` (0: all), or generated inputs
    with ``labels=None`` (accuracy is then top-1 agreement with a reference model)."""
    if not split:
        gen = torch.Generator().manual_seed(seed)
        return [(make_input(cfg, batch, gen), None) for _ in range(max(num_batches, 1))]
    out: list[Batch] = []
    for inputs, labels in split_batches(cfg, split, batch):
        out.append((inputs, labels))
        if num_batches and len(out) >= num_batches:
            break
    return out


@torch.inference_mode()
def evaluate(model: PolicyModel, batches: Sequence[Batch], reference: Sequence[Tensor] | None = None,
             device: torch.device | str = "cpu") -> dict[str, Any]:
    """Top-1 accuracy (%; against labels, else agreement with ``reference`` predictions), mean GMACs per
    sample on the actual keep masks, mean final keep ratio, and the predictions."""
    correct, total, gmacs, keep, preds = 0, 0, 0.0, 0.0, []
    for i, (x, labels) in enumerate(batches):
        out = model(x.to(device), return_policy=True)
        pred = out.logits.argmax(-1).cpu()
        preds.append(pred)
        target = labels if labels is not None else (reference[i] if reference is not None else None)
        if target is not None:
            correct += int((pred == target.cpu()).sum())
        total += x.shape[0]
        gmacs += float(model_gmacs_per_sample(model, out).sum())
        keep += float(out.keep_ratio.sum())
    has_target = batches and (batches[0][1] is not None or reference is not None)
    return {"accuracy": 100.0 * correct / total if has_target else None, "gmacs": gmacs / total,
            "keep_ratio": keep / total, "predictions": preds}


def throughput(models: Sequence[nn.Module], x: Tensor, warmup: int = 1, iters: int = 3,
               precision: str = "fp32") -> list[dict[str, float]]:
    """Interleaved timing of ``models`` on ``x``: per model median seconds, throughput and speed-up vs the first."""
    variants = [Variant(str(i), m, "") for i, m in enumerate(models)]
    times = time_interleaved(variants, x, precision, warmup, iters)
    base = statistics.median(times["0"])
    return [{"median_s": statistics.median(times[v.name]), "throughput": x.shape[0] / statistics.median(times[v.name]),
             "speedup": base / statistics.median(times[v.name])} for v in variants]


def dense_of(model: PolicyModel) -> PolicyModel:
    """The same backbone with every token kept (the dense reference; no copy of weights)."""
    return PolicyModel(model.backbone, NoDropPolicy(), model.num_groups).eval()


def with_threshold(model: PolicyModel, threshold: float) -> PolicyModel:
    """The same backbone and interpreters with another threshold (no copy of weights)."""
    policy = cast(InterpreterPolicy, model.policy)  # callers pass interpreter (IA-RED^2) models only
    return PolicyModel(model.backbone, threshold_policy(policy, threshold), model.num_groups).eval()
