#!/usr/bin/env python3
"""Generate a FractalDB-style formula-driven image set (one class per random IFS).

Examples:
    python tools/make_formula.py --out data/formula
    python tools/make_formula.py --out /tmp/fdb1k --classes 1000 --per-class 100 --workers 8
    python tools/make_formula.py --out /tmp/tiny --classes 3 --per-class 4 --val-per-class 2 --size 32 --quiet

Writes train/ifs_NNNN/*.png, val/ifs_NNNN/*.png and meta.json (ImageNet folder
layout); see iared_video/synthetic/formula.py for the method.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from iared_video.synthetic import formula


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--classes", type=int, default=100, help="number of IFS classes")
    p.add_argument("--per-class", type=int, default=100, help="train images per class")
    p.add_argument("--val-per-class", type=int, default=10, help="val images per class")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="worker processes (output does not depend on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the generator; returns the meta dict."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    meta = formula.generate_formula_dataset(
        args.out, num_classes=args.classes, per_class=args.per_class, size=args.size,
        val_per_class=args.val_per_class, seed=args.seed, num_workers=args.workers, progress=not args.quiet)
    print(f"wrote {args.classes} classes x ({args.per_class} train + {args.val_per_class} val) "
          f"= {args.classes * (args.per_class + args.val_per_class)} images of {args.size}px to {args.out} "
          f"in {time.perf_counter() - start:.1f}s")
    return meta


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
