#!/usr/bin/env python3
"""Write Kinetics-400 split files (path label) from the official annotation CSVs and the downloaded clips.

Examples:
    python tools/prepare_kinetics.py --annotations /data/k400/annotations --videos /data/k400 --out /data/k400
    python tools/prepare_kinetics.py --annotations ann --videos clips --out lists --workers 8 --backend pyav

Reads train.csv / validate.csv / test.csv (label,youtube_id,time_start,time_end,split), finds each clip
as <youtube_id>_<start:06d>_<end:06d>.<ext> anywhere under --videos (flat or per-class folders), checks
that it decodes, and writes train.csv, val.csv, test.csv, classnames.json and left_out.csv (every clip
left out, with the reason) in --out. Missing, undecodable and unlabeled clips are left out, never fatal.
See datasets/KINETICS.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tqdm import tqdm

from iared_video.datasets.decoder import BACKENDS
from iared_video.datasets.prepare_kinetics import LEFT_OUT_FILE, SplitResult, prepare_kinetics


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--annotations", required=True, help="folder with the official train/validate/test.csv")
    p.add_argument("--videos", required=True, help="folder searched recursively for the clips")
    p.add_argument("--out", required=True, help="output folder for the split files")
    p.add_argument("--workers", type=int, default=2, help="decoding check processes (0: none)")
    p.add_argument("--backend", choices=BACKENDS, default="decord", help="decoder tried first")
    p.add_argument("--frames", type=int, default=4, help="evenly spaced frames decoded per clip")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> list[SplitResult]:
    """Prepare the split files; prints one line per split."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    progress = (lambda items, total, desc: items) if args.quiet else (
        lambda items, total, desc: tqdm(items, total=total, desc=desc, unit="clip"))
    results = prepare_kinetics(args.annotations, args.videos, args.out, args.workers, args.backend, args.frames,
                               progress)
    for r in results:
        state = f"{len(r.rows)} clips written" if r.written else "not written (no clip left)"
        print(f"{r.split}: {state}, {len(r.left_out)} left out "
              f"({r.unlabeled} without a label)")
    print(f"{sum(len(r.left_out) for r in results)} clips left out in all, each named in "
          f"{args.out}/{LEFT_OUT_FILE}")
    return results


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
