#!/usr/bin/env python
"""Every registered method head to head on the synthetic video and image sets, in one command.

    python tools/head_to_head.py --out ./output/head_to_head [--kinds video image] [--methods all | M ...]
                                 [--run video=DIR] [--run image=DIR] [--checkpoint KIND:METHOD=PATH ...]
                                 [--match keep|gmacs] [--finetune] [--epochs N] [--quick] [--no-train]
                                 [--max-samples M] [--large-batch B] [--iters I] [KEY VALUE ...]

Methods (``iared_video.methods``; ``--methods all`` for every registered one, default the paper's set: dense,
iared, dynamicvit, random, attention, temporal_diff) are named by their table label (``dense``, ``iared``,
``iared_gumbel``, ``dynamicvit``, ``random``, ``attention``, ``temporal_diff``, ``tome``, ``evit``).

Where the models come from, per kind:

* ``--run KIND=DIR``: a main-job output folder (``tools/main_job.py``: ``DIR/dense``, ``DIR/iared``,
  ``DIR/random``, ...). A method with a checkpoint in ``DIR/<label>`` is tested as trained (its config read from
  the checkpoint); ``--checkpoint video:tome=PATH`` names a checkpoint explicitly. Training-free methods (ToMe,
  EViT) without one run off the shelf on the dense weights (``--finetune``: fine-tuned from them instead);
  other methods without one are trained from the dense weights (unless ``--no-train``).
* without ``--run``: dense is trained from ``MODEL.PRETRAINED`` and every other method from the dense weights
  (methods whose output folder already has ``test_results.json`` are not retrained; ``--no-train`` only reads).

Methods with a cost knob (fixed-ratio drop, ToMe's r, EViT's keep rate; DynamicViT's rho with ``gmacs``) are set
against IA-RED^2: ``--match keep`` to its measured val keep ratio (as the main job did before; DynamicViT keeps its
configured rho), ``--match gmacs`` to its test GMACs per view (bisection on the knob).

Training runs through the main job's recipe (``experiments.main_job.run_recipe``: dense -> IA-RED^2 from the dense
weights -> the others set against IA-RED^2). Then for each method: accuracy and GMACs/view (the tester's
results), throughput at batch 1 and
``--large-batch`` (interleaved, every model in one run, vs dense), and heatmap segmentation scores (pixel accuracy,
mAcc, mIoU, mAP against the synthetic masks) of the last acting group's scores (``has_scores`` False: the keep map).
Writes ``head_to_head.json`` and Pareto plots (accuracy vs GMACs, accuracy vs batch-1 throughput) into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
from pathlib import Path
from typing import cast

import torch
from fvcore.common.config import CfgNode

from iared_video.config.defaults import SYNTHETIC_DATA_DIRS
from iared_video.experiments.heatmaps import policy_map_scores
from iared_video.experiments.main_job import (
    TEST_ONLY,
    Recipe,
    ensure_synthetic,
    gmacs_of,
    knob_for_gmacs,
    load_trained,
    matched_drop_ratio,
    measured_keep_ratio,
    read_test_results,
    run_recipe,
    run_stage,
    synthetic_config,
)
from iared_video.experiments.pareto import AXIS_LABELS
from iared_video.methods import get_method, registered_methods
from iared_video.models import PolicyModel
from iared_video.utils.results import TestResults, format_table, save_json

__all__ = ["main", "parse_args", "method_labels", "config_path", "epoch_opts", "method_cfg", "prepare_data",
           "train_kind", "run_kind", "measure", "write_outputs", "gmacs_of", "knob_for_gmacs", "get_method"]

DEFAULT_METHODS = ("dense", "iared", "dynamicvit", "random", "attention", "temporal_diff")
REFERENCE, TARGET = "dense", "iared"  # speed-ups are against the dense model; knobs are matched to IA-RED^2
DATA_DIRS = SYNTHETIC_DATA_DIRS
logger = logging.getLogger("head_to_head")


def method_labels(names: list[str]) -> list[str]:
    """Labels of the methods to compare, dense first, in the registry's order (``["all"]``: every method)."""
    wanted = {m.label for m in registered_methods()} if names == ["all"] else {get_method(n).label for n in names}
    return [m.label for m in registered_methods() if m.label in wanted | {REFERENCE}]


def config_path(label: str, kind: str) -> str | None:
    """The synthetic config a method starts from on ``kind`` (None: the method does not apply)."""
    method = get_method(label)
    if method.needs_video and kind != "video":
        return None
    return synthetic_config(kind, method.synthetic_config)


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


def method_cfg(method: str, kind: str, out: str, opts: list[str], dense_ckpt: str = "", drop: float | None = None,
               extra: list[str] | None = None, base: str | None = None):
    """The loaded config of ``method`` on ``kind`` (output under ``out/kind/method``).

    Args:
        method: its label or registry name.
        kind: "video" or "image".
        out: the output root.
        opts: ``KEY VALUE`` overrides for every method.
        dense_ckpt: the dense checkpoint training starts from (not for dense itself).
        drop: set the method's knob to drop about this fraction of the patch tokens (``Method.matched_opts``).
        extra: further overrides, applied last.
        base: the config file (default: the method's synthetic config on the default data folder).
    """
    from iared_video.methods import load_config

    m = get_method(method)
    path = base or config_path(m.label, kind)
    head = [] if base else ["DATA.PATH_TO_DATA_DIR", DATA_DIRS[kind]]
    head += ["OUTPUT_DIR", os.path.join(out, kind, m.label), *m.config_opts()]
    if m.label != REFERENCE:
        head += ["TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt]
    cfg = load_config(path, [*head, *opts, *(extra or [])])
    if drop is None or not m.matched_opts(cfg, drop):
        return cfg
    return load_config(path, [*head, *m.matched_opts(cfg, drop), *opts, *(extra or [])])


def _done(cfg) -> bool:
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "test_results.json"))


def _train_unless_done(cfg, train: bool) -> TestResults | None:
    """Run ``cfg`` (train and/or test) unless ``train`` is False or its OUTPUT_DIR already has test results;
    its test results (those on disk when it did not run; None when there are none)."""
    if train and not _done(cfg):
        return run_stage(cfg, "tcp://localhost:9998")
    return read_test_results(cfg) if _done(cfg) else None


def prepare_data(cfg, kind: str) -> None:
    """Generate the main job's synthetic set at its default folder if needed; use any other folder as it is."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if os.path.normpath(data_dir) == os.path.normpath(DATA_DIRS[kind]):
        ensure_synthetic(data_dir, kind == "image")
    elif not os.path.isdir(data_dir):
        raise FileNotFoundError(f"DATA.PATH_TO_DATA_DIR {data_dir} does not exist")


def _newest(output_dir: str) -> str:
    """The newest valid checkpoint of ``output_dir`` ("" when there is none)."""
    from iared_video.engine.checkpoint import load_newest_valid

    found = load_newest_valid(output_dir) if os.path.isdir(output_dir) else None
    return found[0] if found else ""


def _matching(target: tuple[CfgNode, TestResults | None] | None, match: str):
    """What the knob-bearing methods are set against: ``(drop ratio, target GMACs)`` from IA-RED^2's run.

    ``keep``: its val keep ratio (a given checkpoint: its test keep ratio); ``gmacs``: its test GMACs per view.
    """
    if target is None:
        return None, None
    cfg, results = target
    if match == "gmacs":
        assert results is not None and results.gmacs_per_view is not None  # the target's test reported its GMACs
        return None, float(results.gmacs_per_view)
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        assert results is not None  # a given checkpoint is tested before anything is matched to it
        keep = float(results.keep_ratio)
    else:
        keep = measured_keep_ratio(cfg)
    return matched_drop_ratio(keep), None


def _knob_opts(cfg_of, label: str, drop: float | None, target: float | None) -> tuple[float | None, list[str]]:
    """``(drop, extra options)`` for ``method_cfg``: keep matching through ``drop``, GMACs through the knob."""
    knob = get_method(label).knob
    if target is None or knob is None:
        return drop, []
    return None, [*knob.with_opts, *knob_for_gmacs(cfg_of(), label, target)]


def train_kind(kind: str, out: str, opts: list[str], train: bool, methods: list[str] | None = None,
               match: str = "keep", finetune: bool = False) -> dict:
    """Train (unless done or ``train`` is False) every method of ``kind``; returns label -> (cfg, test results).

    The main job's recipe: dense first, IA-RED^2 from the dense weights, the other methods without a cost knob,
    then those with one, set against IA-RED^2 (see ``--match``). Training-free methods are tested on the dense
    weights unless ``finetune``.
    """
    labels = [m for m in (methods or list(DEFAULT_METHODS)) if config_path(m, kind) is not None]
    dense = method_cfg(REFERENCE, kind, out, opts)
    if train:
        prepare_data(dense, kind)
    plain = [m for m in labels if m != REFERENCE and get_method(m).knob is None]
    matching = functools.lru_cache(maxsize=1)(lambda: _matching(recipe.done.get(TARGET), match))

    def plain_cfg(label: str):
        return lambda ckpt, _target: method_cfg(label, kind, out, opts, ckpt, extra=_off_shelf(label, ckpt, finetune))

    def knob_cfg(label: str):
        def make(ckpt: str, _target) -> CfgNode:
            base = functools.partial(method_cfg, label, kind, out, opts, ckpt)
            drop_l, extra = _knob_opts(base, label, *matching())
            return base(drop_l, extra + _off_shelf(label, ckpt, finetune))
        return make

    others = {m: plain_cfg(m) for m in plain if m != TARGET}
    others.update({m: knob_cfg(m) for m in labels if m != REFERENCE and m not in plain})
    target = plain_cfg(TARGET) if TARGET in plain else None
    recipe = Recipe(dense, (lambda ckpt: target(ckpt, None)) if target else None, others,
                    functools.partial(_train_unless_done, train=train), TARGET, _newest)
    done = run_recipe(recipe)
    return {m: done[m] for m in labels if m in done}


def _off_shelf(label: str, dense_ckpt: str, finetune: bool) -> list[str]:
    """Test-only options on the dense weights for a training-free method (``[]``: it is trained)."""
    if finetune or not get_method(label).training_free:
        return []
    return [*TEST_ONLY, "TEST.CHECKPOINT_FILE_PATH", dense_ckpt]


def checkpoint_cfg(label: str, kind: str, out: str, opts: list[str], path: str, extra: list[str] | None = None):
    """A test-only config of ``label`` for the checkpoint ``path``: the config stored in it (written to
    ``out/kind/label/checkpoint_config.yaml``), else the method's synthetic config."""
    base, dumped = None, _stored_cfg(path)
    if dumped:
        base = os.path.join(out, kind, label, "checkpoint_config.yaml")
        os.makedirs(os.path.dirname(base), exist_ok=True)
        Path(base).write_text(dumped)
    return method_cfg(label, kind, out, opts, "", extra=[*(extra or []), *TEST_ONLY, "TEST.CHECKPOINT_FILE_PATH", path],
                      base=base)


def _stored_cfg(path: str) -> str | None:
    """The config dump in one of our training checkpoints (None for other weight files)."""
    from iared_video.engine.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path).get("cfg")
    except CheckpointError:
        return None


def run_kind(kind: str, out: str, opts: list[str], run_dir: str, checkpoints: dict[str, str], train: bool,
             methods: list[str], match: str, finetune: bool) -> dict:
    """Label -> (cfg, test results) for the trained models of a main-job folder (or explicit checkpoints); the
    rest as documented."""
    labels = [m for m in methods if config_path(m, kind) is not None]
    found = {m: checkpoints.get(m) or (_newest(os.path.join(run_dir, m)) if run_dir else "") for m in labels}
    if not found[REFERENCE]:
        raise FileNotFoundError(f"no dense checkpoint for {kind}: give --run {kind}=DIR with DIR/{REFERENCE}, or "
                                f"--checkpoint {kind}:{REFERENCE}=PATH")
    test = functools.partial(_train_unless_done, train=True)
    done = {}
    for label in (m for m in labels if found[m]):
        cfg = checkpoint_cfg(label, kind, out, opts, found[label])
        done[label] = (cfg, test(cfg))
    drop, target = _matching(done.get(TARGET), match)
    for label in (m for m in labels if not found[m]):
        cfg = _untrained(label, kind, out, opts, found[REFERENCE], train, finetune, drop, target)
        if cfg is None:
            logger.warning("%s: no checkpoint for %s and --no-train: left out", kind, label)
        else:
            done[label] = (cfg, test(cfg))
    return {m: done[m] for m in labels if m in done}


def _untrained(label: str, kind: str, out: str, opts: list[str], dense_ckpt: str, train: bool, finetune: bool,
               drop: float | None, target: float | None):
    """Config of a method without a checkpoint: off the shelf on the dense model, trained from it, or None."""
    m = get_method(label)
    if m.training_free and not finetune:
        dense_cfg = os.path.join(out, kind, REFERENCE, "checkpoint_config.yaml")
        base = dense_cfg if os.path.isfile(dense_cfg) else None
        make = functools.partial(method_cfg, label, kind, out, opts, "", base=base)
        drop_l, extra = _knob_opts(make, label, drop, target)
        return make(drop_l, [*extra, *TEST_ONLY, "TEST.CHECKPOINT_FILE_PATH", dense_ckpt])
    if not train:
        return None
    make = functools.partial(method_cfg, label, kind, out, opts, dense_ckpt)
    drop_l, extra = _knob_opts(make, label, drop, target)
    return make(drop_l, extra)


def measure(runs: dict, kind: str, max_samples: int, large_batch: int, iters: int) -> list[dict]:
    """Accuracy/GMACs from the test results, throughput vs dense at two batch sizes, heatmap scores.

    Args:
        runs: label -> (cfg, test results), as ``train_kind`` and ``run_kind`` return them.
    """
    from iared_video.experiments.tradeoff import throughput

    cfgs = {m: cfg for m, (cfg, _) in runs.items()}
    models = {m: load_trained(c) for m, c in cfgs.items()}
    data = cfgs[REFERENCE].DATA
    shape = (3, data.NUM_FRAMES, data.TEST_CROP_SIZE, data.TEST_CROP_SIZE) if kind == "video" else \
        (3, data.TEST_CROP_SIZE, data.TEST_CROP_SIZE)
    speed = {b: throughput(list(models.values()), torch.randn(b, *shape), 1, iters) for b in (1, large_batch)}
    rows = []
    for i, (method, cfg) in enumerate(cfgs.items()):
        res = runs[method][1] or read_test_results(cfg)
        err = res.video1_err if res.video1_err is not None else res.top1_err
        rows.append({"kind": kind, "method": method, "accuracy": None if err is None else 100.0 - err,
                     "gmacs": res.gmacs_per_view, "keep_ratio": res.keep_ratio,
                     "throughput": speed[1][i]["throughput"], "speedup_b1": speed[1][i]["speedup"],
                     f"throughput_b{large_batch}": speed[large_batch][i]["throughput"],
                     f"speedup_b{large_batch}": speed[large_batch][i]["speedup"],
                     "has_scores": get_method(method).has_scores, "checkpoint": cfg.TEST.CHECKPOINT_FILE_PATH or "",
                     **policy_map_scores(cast(PolicyModel, models[method]), cfg, max_samples)})
    return rows


def write_outputs(rows: list[dict], out: str) -> None:
    """``head_to_head.json``, the Pareto plots per kind, and the table on stdout."""
    from iared_video.utils.plots import plot_series

    save_json({"rows": rows}, os.path.join(out, "head_to_head.json"))
    for x, name in (("gmacs", "pareto_gmacs.png"), ("throughput", "pareto_throughput.png")):
        for kind in sorted({r["kind"] for r in rows}):
            series = {r["method"]: [(r[x], r["accuracy"])] for r in rows if r["kind"] == kind}
            unit = "clips/s" if kind == "video" else "images/s"
            label = AXIS_LABELS[x] if x == "gmacs" else f"{AXIS_LABELS[x]} at batch 1 ({unit})"
            plot_series(series, label, "top-1 accuracy (%)", os.path.join(out, f"{kind}_{name}"),
                        f"{kind}: accuracy vs {x}")
    large = next((k for r in rows for k in r if k.startswith("speedup_b") and k != "speedup_b1"), "")
    print(format_table(rows, columns=("kind", "method", "accuracy", "gmacs", "keep_ratio", "throughput",
                                      "speedup_b1", large, "miou", "map")))


def _parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    """``["video=DIR", ...]`` -> ``{"video": DIR}``."""
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not rest:
            raise argparse.ArgumentTypeError(f"{flag} takes KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="./output/head_to_head")
    parser.add_argument("--kinds", nargs="+", default=["video", "image"], choices=["video", "image"])
    parser.add_argument("--methods", nargs="+", default=None, help="labels, or 'all' (default: the paper's set)")
    parser.add_argument("--run", action="append", default=[], metavar="KIND=DIR", help="a main-job output folder")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="KIND:METHOD=PATH",
                        help="a method's trained checkpoint (repeatable)")
    parser.add_argument("--match", choices=["keep", "gmacs"], default="keep", help="what knobs are matched to")
    parser.add_argument("--finetune", action="store_true", help="fine-tune training-free methods (ToMe, EViT)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every training stage")
    parser.add_argument("--quick", action="store_true", help="1 epoch, no per-epoch eval, 1 crop")
    parser.add_argument("--no-train", action="store_true", help="only read existing results")
    parser.add_argument("--max-samples", type=int, default=64, help="samples for heatmap scores")
    parser.add_argument("--large-batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every method")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    opts = epoch_opts(args.epochs, args.quick) + list(args.opts)
    runs = _parse_pairs(args.run, "--run")
    checkpoints = _parse_pairs(args.checkpoint, "--checkpoint")
    methods = method_labels(args.methods or list(DEFAULT_METHODS))
    rows = []
    for kind in args.kinds:
        mine = {k.partition(":")[2]: v for k, v in checkpoints.items() if k.partition(":")[0] == kind}
        if kind in runs or mine:
            given = {get_method(k).label: v for k, v in mine.items()}
            runs_k = run_kind(kind, args.out, opts, runs.get(kind, ""), given, not args.no_train, methods, args.match,
                            args.finetune)
        else:
            runs_k = train_kind(kind, args.out, opts, not args.no_train, methods, args.match, args.finetune)
        rows += measure(runs_k, kind, args.max_samples, args.large_batch, args.iters)
    write_outputs(rows, args.out)
    return rows

