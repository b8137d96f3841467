"""Throughput of dense vs IA-RED^2 vs the methods at keep targets, with ideal (GMACs) speed-ups and efficiency.

Examples:
    python tools/benchmark.py --preset deit_s --batch-sizes 1 16 --keep-ratios 0.5 0.7 --out bench.json
    python tools/benchmark.py --preset tsf --batch-sizes 1 4 --iters 5 --out tsf.json
    python tools/benchmark.py --preset tsf_divst --batch-sizes 1 8 --keep-ratios 0.5 0.7 --out tsf_divst.json
    python tools/benchmark.py --preset deit_s --cpu-linear onednn --batch-sizes 1 16 --out deit_s_onednn.json
    python tools/benchmark.py --cfg configs/IN1k/deit_b.yaml --precisions fp32 bf16 DATA.TEST_CROP_SIZE 384

    python tools/benchmark.py --preset main_video --batch-sizes 1 16 32 --gmacs-budgets 0.35 --methods-at-keep all
    python tools/benchmark.py --suite benchmarks/cpu-2core/suite --report docs/BENCHMARK_TABLES.md

``--gmacs-budgets`` sets every method with a keep-target variant to cost that fraction of the dense GMACs.
``--suite DIR`` runs ``SUITE`` (every preset at its budget, batch 1 and the larger batches, every method),
one JSON per preset in DIR (a preset whose JSON is there is not run again), then writes the table
(``--report``) and the measured-vs-ideal plot beside it.

The presets and the command line of ``tools/benchmark.py``; the harness itself is
``iared_video.engine.benchmark`` (also the ``BENCHMARK.ENABLE`` stage of ``tools/run_net.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from fvcore.common.config import CfgNode
from tqdm import tqdm

from iared_video.config import ConfigError
from iared_video.config.choices import CPU_LINEARS, KEEP_SCHEDULES, PRECISIONS
from iared_video.config.defaults import get_defaults
from iared_video.engine.benchmark import BenchSettings, benchmark_table, keep_target_methods, run_benchmark
from iared_video.experiments.main_job import MAIN_JOB_CONFIGS
from iared_video.methods import load_config, method_names
from iared_video.utils.plots import plot_measured_vs_ideal
from iared_video.utils.results import BenchmarkResults, format_table, save_json

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "PRESET_CONFIGS", "SUITE", "SuiteEntry", "add_model_args", "cfg_from_args", "preset_config",
           "run_suite", "suite_rows", "write_report", "main"]

PRESETS: dict[str, list[str]] = {
    "deit_s": ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_small_patch16_224", "MODEL.NUM_CLASSES", "1000",
               "IARED.NUM_GROUPS", "3", "DATA.TRAIN_CROP_SIZE", "224", "DATA.TEST_CROP_SIZE", "224"],
    "deit_b": ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_base_patch16_224", "MODEL.NUM_CLASSES", "1000",
               "IARED.NUM_GROUPS", "3"],
    "tsf": [],  # the defaults: JointST TimeSformer-B, 8x224, K400
    "tsf_divst": ["MODEL.ATTENTION_TYPE", "divided_space_time"],  # divST TimeSformer-B 8x224 (released checkpoints)
    "main_video": [],  # the main job's video model (PRESET_CONFIGS), random weights: timing only
    "main_image": [],  # the main job's image model
}

#: Presets that start from a shipped config (before their opts and the trailing opts): the main job's featured
#: IA-RED^2 configs (``MAIN_JOB_CONFIGS``: dense, featured IA-RED^2, random, paper IA-RED^2 per kind).
PRESET_CONFIGS: dict[str, str] = {f"main_{kind}": MAIN_JOB_CONFIGS[kind][1] for kind in ("video", "image")}


@dataclass(frozen=True)
class SuiteEntry:
    """One preset of the suite: batch sizes, the GMACs budget (fraction of dense), iterations, and the
    methods also timed as configured (their paper settings: ToMe r = 8, EViT keep rate 0.7)."""

    batch_sizes: tuple[int, ...]
    budget: float
    iters: int
    warmup: int
    configured: tuple[str, ...] = ()


#: docs/BENCHMARK_TABLES.md's runs. Budgets: DeiT near the EViT/IA-RED^2 papers' DeiT-S cost, TimeSformer at half,
#: the main-job models at their featured IA-RED^2 rows' cost (0.35x video, 0.55x image); the main-job test
#: batch (16 video clips, 256 images) beside 1 and 32.
SUITE: dict[str, SuiteEntry] = {
    "deit_s": SuiteEntry((1, 32), 0.6, 15, 3, ("tome", "evit", "dynamicvit")),
    "deit_b": SuiteEntry((1, 32), 0.6, 8, 2),
    "tsf": SuiteEntry((1, 8), 0.5, 3, 1),
    "tsf_divst": SuiteEntry((1, 8), 0.5, 3, 1),
    "main_video": SuiteEntry((1, 16, 32), 0.35, 20, 3),
    "main_image": SuiteEntry((1, 32, 256), 0.55, 20, 3),
}

def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg``, ``--preset``, ``--device``, ``--threads`` and trailing ``KEY VALUE`` opts."""
    parser.add_argument("--cfg", default=None, help="yaml config (merged over the defaults)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="deit_s: DeiT-S 224, D=3; deit_b: DeiT-B, D=3; tsf: JointST TimeSformer 8x224; "
                             "tsf_divst: divided space-time TimeSformer 8x224; main_video / main_image: the "
                             "main job's models (configs/Synthetic/{tsf,deit}_tiny_iared.yaml)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")


def cfg_from_args(args: argparse.Namespace) -> CfgNode:
    """Config from ``--preset`` opts, then ``--cfg``, then the trailing opts."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return preset_config(args.preset, args.cfg, list(args.opts or []))


def preset_config(preset: str | None, cfg_path: str | None = None, opts: list[str] | None = None) -> CfgNode:
    """The preset's shipped config and opts, then ``cfg_path``, then ``opts``."""
    base = PRESET_CONFIGS.get(preset or "")
    if base and cfg_path:
        raise ConfigError(f"--preset {preset} is {base}; give --cfg or this preset, not both")
    return load_config(base or cfg_path, PRESETS.get(preset or "", []) + list(opts or []))


def main(argv: list[str] | None = None) -> BenchmarkResults | list[dict]:
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
                        help="controlled-keep targets r (per-sample ratios spread evenly over [r-spread, r+spread], "
                             "mean r unless clipped to [0.01, 1])")
    parser.add_argument("--keep-spread", type=float, default=b.KEEP_SPREAD)
    parser.add_argument("--keep-schedule", choices=KEEP_SCHEDULES, default=b.KEEP_SCHEDULE)
    parser.add_argument("--gmacs-budgets", type=float, nargs="*", default=list(b.GMACS_BUDGETS),
                        help="fractions of the dense GMACs: every method with a keep-target variant set to cost it")
    parser.add_argument("--methods", nargs="*", default=[], choices=method_names(),
                        help="methods timed as configured (and at the keep targets and budgets); default: dense "
                             "and IA-RED^2")
    parser.add_argument("--methods-at-keep", nargs="*", default=list(b.METHODS_AT_KEEP),
                        choices=keep_target_methods() + ["all"],
                        help="methods also timed at each keep target and budget (fixed-ratio baselines, "
                             "DynamicViT, ToMe, EViT; all: every one that runs on the model)")
    parser.add_argument("--data-split", default=b.DATA_SPLIT, help="use the first batch of this split instead of noise")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--cpu-linear", choices=CPU_LINEARS, default=b.CPU_LINEAR,
                        help="CPU fp32 linear layers: torch's default BLAS or oneDNN for every variant "
                             "(adds an aten dense row; ratios stay against the oneDNN dense model)")
    parser.add_argument("--suite", default=None, metavar="DIR",
                        help="run SUITE (every preset, its budget and batch sizes, every method) into DIR")
    parser.add_argument("--report", default=None, help="with --suite: markdown table path (plot beside it)")
    parser.add_argument("--out", default=None, help="JSON output path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.suite:
        return run_suite(args.suite, args.report, args.device, args.threads)
    cfg = cfg_from_args(args)
    at_keep = keep_target_methods() if "all" in args.methods_at_keep else args.methods_at_keep
    settings = BenchSettings(batch_sizes=args.batch_sizes, precisions=args.precisions, warmup=args.warmup,
                             iters=args.iters, thresholds=args.thresholds, keep_ratios=args.keep_ratios,
                             keep_spread=args.keep_spread, keep_schedule=args.keep_schedule,
                             methods_at_keep=at_keep, data_split=args.data_split,
                             seed=cfg.RNG_SEED, measure_memory=not args.no_memory,
                             cpu_linear=args.cpu_linear, methods=args.methods, gmacs_budgets=args.gmacs_budgets)
    results = run_benchmark(cfg, settings, args.device)
    print(benchmark_table(results.rows, results.unit))
    print(f"environment: {results.environment}")
    if args.out:
        save_json(results, args.out)
        print(f"wrote {args.out}")
    return results


def suite_settings(entry: SuiteEntry) -> BenchSettings:
    """Dense, IA-RED^2 (per-sample counts) and every keep-target method at the entry's budget; the
    ``configured`` methods also at their configured (paper) settings."""
    return BenchSettings(batch_sizes=entry.batch_sizes, warmup=entry.warmup, iters=entry.iters, thresholds=[],
                         keep_ratios=[], methods=["dense", "iared", *entry.configured],
                         methods_at_keep=keep_target_methods(), gmacs_budgets=[entry.budget], measure_memory=False)


def run_suite(out_dir: str, report: str | None = None, device: str | None = None, threads: int = 0,
              presets: list[str] | None = None) -> list[dict]:
    """Run every ``SUITE`` preset not yet in ``out_dir`` (one ``<preset>.json`` each), then the table."""
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    for preset in tqdm(presets or list(SUITE), desc="suite", unit="preset"):
        path = os.path.join(out_dir, f"{preset}.json")
        if os.path.exists(path):
            logger.info("suite: %s already in %s, not run again", preset, path)
            continue
        results = run_benchmark(preset_config(preset), suite_settings(SUITE[preset]), device)
        print(benchmark_table(results.rows, results.unit))
        save_json(results, path)
    rows = suite_rows(out_dir)
    print(format_table(rows, SUITE_COLUMNS))
    if report:
        write_report(rows, report)
    return rows


SUITE_COLUMNS = ("preset", "batch_size", "variant", "keep_ratio", "gmacs_ratio", "throughput", "speedup",
                 "ideal_speedup", "efficiency")


def suite_rows(out_dir: str) -> list[dict]:
    """One summary row per (preset, batch size, variant) of the suite's JSONs in ``out_dir``, in ``SUITE`` order."""
    rows = []
    for preset in SUITE:
        path = os.path.join(out_dir, f"{preset}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        dense = {r["batch_size"]: r["gmacs_per_sample"] for r in data["rows"] if r["policy"] == "dense"}
        for r in data["rows"]:
            rows.append({"preset": preset, "batch_size": r["batch_size"], "variant": r["variant"],
                         "keep_ratio": r["keep_ratio"], "gmacs_ratio": r["gmacs_per_sample"] / dense[r["batch_size"]],
                         "throughput": r[data["unit"]], "unit": data["unit"], "speedup": r["speedup"],
                         "ideal_speedup": r["ideal_speedup"], "efficiency": r["efficiency"],
                         "environment": data["environment"]})
    return rows


def write_report(rows: list[dict], path: str) -> None:
    """Markdown tables (one per preset) and ``<path stem>.png`` (measured against ideal speed-up)."""
    lines = ["# Every method at one GMACs budget", "",
             "Written by `python tools/benchmark.py --suite DIR --report PATH` from DIR's JSON files (one per "
             "preset, `SUITE` in `iared_video/experiments/benchmark.py`). Every method runs on one backbone with "
             "generated input, timed interleaved with the others in one process; each method with a cost knob "
             "is set by bisection to the preset's budget (a method that cannot go as low runs at its floor: "
             "see its GMACs). `iared@gmacs`: IA-RED²'s interpreters with per-sample keep ratios spread evenly "
             "over ±0.1 around the mean. Speed-up: ratio of median times against dense; ideal: dense GMACs / "
             "GMACs on the same batch; measured / ideal: their ratio.", ""]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = [r for r in rows if r["preset"] == preset]
        unit = mine[0]["unit"].replace("_per_s", "/s")
        lines += [f"### {preset} (budget {SUITE[preset].budget:g}x dense GMACs)", "",
                  f"| batch | variant | keep | GMACs (x dense) | {unit} | speed-up | ideal | measured / ideal |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['batch_size']} | {r['variant']} | {r['keep_ratio']:.3f} | {r['gmacs_ratio']:.3f} | "
                  f"{r['throughput']:.1f} | {r['speedup']:.2f} | {r['ideal_speedup']:.2f} | {r['efficiency']:.3f} |"
                  for r in mine]
        lines.append("")
    env = rows[0]["environment"] if rows else {}
    lines.append(f"Machine: {env.get('device')}, {env.get('threads')} threads, torch {env.get('torch')}.")
    Path(path).write_text("\n".join(lines) + "\n")
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    batch_one: dict[str, dict[str, list[bool]]] = {}
    for r in rows:
        if r["variant"] != "dense":
            title = f"{r['preset']} (hollow: batch 1)"
            name = r["variant"].split("@")[0] if "@gmacs=" in r["variant"] else r["variant"]
            panels.setdefault(title, {}).setdefault(name, []).append((r["ideal_speedup"], r["speedup"]))
            batch_one.setdefault(title, {}).setdefault(name, []).append(r["batch_size"] == 1)
    plot_measured_vs_ideal(panels, str(Path(path).with_suffix(".png")), hollow=batch_one)
    print(f"wrote {path}")
