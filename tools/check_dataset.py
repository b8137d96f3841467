#!/usr/bin/env python3
"""Scan a video split CSV: open and decode a few frames of every video, report the unreadable ones.

Examples:
    python tools/check_dataset.py data/k400/val.csv --workers 2
    python tools/check_dataset.py data/k400/train.csv --backend pyav --prefix /data/k400 --allow-bad

Exit status 1 when a video cannot be read by any backend (unless --allow-bad). Videos that
only the fallback backend can read are listed too: the data loader reads them, more slowly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from tqdm import tqdm

from iared_video.datasets.check import Report, run_checks
from iared_video.datasets.decoder import BACKENDS
from iared_video.datasets.kinetics import load_class_names, read_split_csv
from iared_video.utils.results import format_table, save_json


def summarize(reports: Sequence[Report], backend: str) -> str:
    """Tables of unreadable and fallback-only videos, then counts and frame/fps ranges."""
    bad = [r for r in reports if not r.ok]
    fallback = [r for r in reports if r.ok and r.backend != backend]
    good = [r for r in reports if r.ok]
    parts = []
    if bad:
        parts += [f"\nUnreadable videos ({len(bad)}):",
                  format_table([{"path": r.path, "reason": r.reason} for r in bad])]
    if fallback:
        parts += [f"\nReadable only by the fallback backend ({len(fallback)}):",
                  format_table([{"path": r.path, "detail": f"{r.backend} ok; {r.reason}"} for r in fallback])]
    parts.append(f"\n{len(reports)} videos: {len(good)} readable ({len(fallback)} only by fallback), "
                 f"{len(bad)} unreadable")
    if good:
        frames, fps = np.array([r.frames for r in good]), np.array([r.fps for r in good])
        parts.append(f"frames min/median/max {frames.min()}/{int(np.median(frames))}/{frames.max()}, "
                     f"fps min/max {fps.min():.2f}/{fps.max():.2f}, "
                     f"shortest short side {min(min(r.height, r.width) for r in good)} px")
    return "\n".join(parts)


def split_paths(csv: str, separator: str, prefix: str) -> list[str]:
    """Video paths of a split CSV (relative paths resolve against the CSV's folder, as in the loader)."""
    data_dir = os.path.dirname(os.path.abspath(csv))
    names_file = os.path.join(data_dir, "classnames.json")
    class_to_id = load_class_names(names_file) if os.path.exists(names_file) else None
    return read_split_csv(csv, separator, prefix, data_dir, class_to_id)[0]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv", help="split file with 'path label' lines")
    p.add_argument("--backend", choices=BACKENDS, default="decord", help="backend tried first")
    p.add_argument("--no-fallback", action="store_true", help="do not try the other backend")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: none)")
    p.add_argument("--frames", type=int, default=4, help="evenly spaced frames decoded per video")
    p.add_argument("--prefix", default="", help="DATA.PATH_PREFIX joined to every path")
    p.add_argument("--separator", default=" ", help="DATA.PATH_LABEL_SEPARATOR")
    p.add_argument("--allow-bad", action="store_true", help="exit 0 even when videos are unreadable")
    p.add_argument("--out", default="", help="also write every report to this json file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; returns the exit status."""
    args = build_parser().parse_args(argv)
    paths = split_paths(args.csv, args.separator, args.prefix)
    checks = run_checks(paths, args.backend, args.frames, args.workers, not args.no_fallback)
    reports = list(tqdm(checks, total=len(paths), desc="checking", unit="video"))
    print(summarize(reports, args.backend))
    if args.out:
        save_json([asdict(r) for r in reports], args.out)
    bad = sum(not r.ok for r in reports)
    return 1 if bad and not args.allow_bad else 0


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
