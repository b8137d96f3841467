r"""Input resolution (the paper's Table 4, DeiT-B 224 vs 384): dense, IA-RED^2 and fixed-ratio policies per size.

Each resolution gets a model built at that size which loads the checkpoint trained at
``DATA.TRAIN_CROP_SIZE`` through ``load_pretrained``: the patch grid of the positional embedding is
resampled once at load (bicubic, timm's ``resample_abs_pos_embed``, class-token position kept); every
other tensor (blocks, interpreters, head) loads as it is. Per resolution and method: analytic GMACs per
sample on the actual keep masks (interpreter included), top-1 accuracy on ``--data-split`` (without a
split the table says "no data"), top-1 agreement with the dense model at the same resolution, and
throughput timed interleaved with the dense model at the same resolution (``speedup``).

Example (IA-RED^2 DeiT-B trained at 224, evaluated at 224 and 384):
    python tools/sweep_resolution.py --cfg configs/IN1k/deit_b.yaml --resolutions 224 384 --data-split val \
        --fixed-policies random --out-dir out/resolution MODEL.PRETRAINED iared_deit_b.pyth
``--checkpoints`` gives one checkpoint per resolution instead (e.g. weights fine-tuned at 384). Without any
checkpoint the randomly initialised model at the cfg's crop size is what every resolution loads.
"""

from __future__ import annotations

import argparse
import tempfile
from math import prod
from pathlib import Path
from typing import cast

import torch
from fvcore.common.config import CfgNode

from iared_video.config import is_video
from iared_video.experiments.benchmark import add_model_args, cfg_from_args
from iared_video.experiments.tradeoff import add_eval_args, dense_of, eval_batches, evaluate, throughput, with_threshold
from iared_video.methods import build_model, registered_methods
from iared_video.methods.fixed_ratio import FixedRatio
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models import PolicyModel
from iared_video.models.weights import load_pretrained
from iared_video.utils.plots import plot_series
from iared_video.utils.results import format_table, save_json

COLUMNS = ("method", "resolution", "tokens", "threshold", "drop_ratio", "pos_embed", "accuracy", "agreement",
           "gmacs", "ideal_speedup", "keep_ratio", "throughput", "speedup")
NO_DATA = "no data"


def resolution_cfg(cfg: CfgNode, size: int) -> CfgNode:
    """``cfg`` with train/test crop ``size`` (the model is built at that size), no ``MODEL.PRETRAINED``."""
    node = cfg.clone()
    node.defrost()
    node.DATA.TRAIN_CROP_SIZE = node.DATA.TEST_CROP_SIZE = size
    node.MODEL.PRETRAINED = ""  # loaded by ``load_at``, which keeps the load report
    node.freeze()
    return node


def base_checkpoint(cfg: CfgNode, folder: str) -> str:
    """``MODEL.PRETRAINED``, else the seeded random model at the cfg's crop size saved under ``folder``."""
    if cfg.MODEL.PRETRAINED:
        return cfg.MODEL.PRETRAINED
    torch.manual_seed(cfg.RNG_SEED)
    path = str(Path(folder) / f"random_init_{cfg.DATA.TRAIN_CROP_SIZE}px.pyth")
    torch.save({"model_state": build_model(cfg).state_dict()}, path)
    return path


def load_at(node: CfgNode, size: int, checkpoint: str) -> tuple[PolicyModel, str]:
    """The model of ``node`` (built at ``size``) with ``checkpoint`` loaded, and what happened to its ``pos_embed``."""
    model = cast(PolicyModel, build_model(node).eval())
    if size % model.backbone.patch_size:
        raise SystemExit(f"resolution {size} is not a multiple of the patch size {model.backbone.patch_size}")
    report = load_pretrained(model, checkpoint)
    return model, report.notes.get("backbone.pos_embed", "as is")


def num_patches(cfg: CfgNode, model: PolicyModel) -> int:
    """Patch tokens N of one input at the model's grid (times the frames for video)."""
    frames = cfg.DATA.NUM_FRAMES if is_video(cfg) else 1
    return prod(model.backbone.patch_embed.grid_size) * frames


def fixed_ratio_methods() -> dict[str, FixedRatio]:
    """The fixed-ratio baselines of the registry by table label (the rows' ``method``)."""
    return {m.label: m for m in registered_methods() if isinstance(m, FixedRatio)}


def methods(model: PolicyModel, thresholds: list[float], fixed: list[str],
            drop_ratio: float) -> list[tuple[dict, PolicyModel]]:
    """``(row fields, model)`` for dense, IA-RED^2 per threshold and each fixed-ratio policy, one backbone."""
    out: list[tuple[dict, PolicyModel]] = [({"method": "dense"}, dense_of(model))]
    if isinstance(model.policy, InterpreterPolicy):
        out += [({"method": "iared", "threshold": t}, with_threshold(model, t)) for t in thresholds]
    for name in fixed:
        policy = fixed_ratio_methods()[name].policy_type(drop_ratio)
        variant = PolicyModel(model.backbone, policy, model.num_groups).eval()
        out.append(({"method": name, "drop_ratio": drop_ratio}, variant))
    return out


def agreement(predictions: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Top-1 agreement (%) of two prediction lists."""
    return 100.0 * float((torch.cat(predictions) == torch.cat(reference)).double().mean())


def sweep_one(variants: list[tuple[dict, PolicyModel]], batches: list, size: int, tokens: int, pos_embed: str,
              iters: int) -> list[dict]:
    """Rows of one resolution: accuracy, agreement and GMACs per method, throughput interleaved with dense."""
    evals = [evaluate(m, batches) for _, m in variants]
    speeds = throughput([m for _, m in variants], batches[0][0], iters=iters)
    dense_gmacs = evals[0]["gmacs"]
    rows = []
    for (fields, _), result, speed in zip(variants, evals, speeds):
        rows.append({**fields, "resolution": size, "tokens": tokens, "pos_embed": pos_embed,
                     "accuracy": result["accuracy"], "agreement": agreement(result["predictions"],
                                                                            evals[0]["predictions"]),
                     "gmacs": result["gmacs"], "ideal_speedup": dense_gmacs / result["gmacs"],
                     "keep_ratio": result["keep_ratio"], "throughput": speed["throughput"],
                     "speedup": speed["speedup"], "median_s": speed["median_s"]})
    return rows


def write_outputs(rows: list[dict], out_dir: str, meta: dict) -> None:
    """Table on stdout, ``sweep_resolution.json`` and ``.png`` (accuracy, else throughput, vs GMACs)."""
    labelled = meta["data"] is not None
    shown = rows if labelled else [{**r, "accuracy": NO_DATA} for r in rows]
    print(format_table(shown, columns=COLUMNS))
    if not labelled:
        print(f"accuracy: {NO_DATA} (generated input, no labels); agreement = top-1 agreement with dense "
              "at the same resolution")
    save_json({"rows": rows, **meta}, str(Path(out_dir) / "sweep_resolution.json"))
    y = "accuracy" if labelled else "throughput"
    series: dict[str, list] = {}
    labels: dict[str, list] = {}
    for r in rows:
        name = r["method"] if r.get("threshold") is None else f"{r['method']} t={r['threshold']:g}"
        series.setdefault(name, []).append((r["gmacs"], r[y]))
        labels.setdefault(name, []).append(f"{r['resolution']}px")
    ylabel = "top-1 accuracy (%)" if labelled else f"throughput ({meta['unit']}/s)"
    plot_series(series, "GMACs per sample", ylabel, str(Path(out_dir) / "sweep_resolution.png"),
                "resolution sweep", labels)
    print(f"wrote {out_dir}/sweep_resolution.json and sweep_resolution.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    add_eval_args(parser)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 384], help="input sizes (pixels)")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="one checkpoint per resolution")
    parser.add_argument("--thresholds", type=float, nargs="*", default=None, help="default: IARED.THRESHOLD")
    parser.add_argument("--fixed-policies", nargs="*", default=[], choices=sorted(fixed_ratio_methods()),
                        help="fixed-ratio baselines by table label")
    parser.add_argument("--drop-ratio", type=float, default=None, help="fixed policies (default: DROP.RATIO)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    cfg = cfg_from_args(args)
    if args.checkpoints and len(args.checkpoints) != len(args.resolutions):
        raise SystemExit(f"{len(args.checkpoints)} checkpoints for {len(args.resolutions)} resolutions")
    thresholds = args.thresholds or [cfg.IARED.THRESHOLD]
    drop_ratio = cfg.DROP.RATIO if args.drop_ratio is None else args.drop_ratio
    rows, notes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = args.checkpoints or [base_checkpoint(cfg, tmp)] * len(args.resolutions)
        for size, checkpoint in zip(args.resolutions, checkpoints):
            node = resolution_cfg(cfg, size)
            model, notes[str(size)] = load_at(node, size, checkpoint)
            batches = eval_batches(node, args.data_split, args.num_batches, args.batch_size, cfg.RNG_SEED)
            variants = methods(model, thresholds, args.fixed_policies, drop_ratio)
            status = "as is" if notes[str(size)] == "as is" else "resampled"
            rows += sweep_one(variants, batches, size, num_patches(node, model), status, args.iters)
    unit = "clips" if is_video(cfg) else "images"
    meta = {"data": args.data_split or None, "unit": unit, "arch": cfg.MODEL.ARCH,
            "checkpoint_resolution": cfg.DATA.TRAIN_CROP_SIZE, "checkpoints": args.checkpoints or
            (cfg.MODEL.PRETRAINED or "random init"), "pos_embed": notes,
            "accuracy": f"top-1 on {args.data_split}" if args.data_split else NO_DATA}
    write_outputs(rows, args.out_dir, meta)
    return rows

