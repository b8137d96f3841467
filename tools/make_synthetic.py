#!/usr/bin/env python3
"""Generate the embedded synthetic video (Kinetics CSV) or image (ImageNet folder) set.

Examples:
    python tools/make_synthetic.py --out data/synthetic --videos 400 --seed 0
    python tools/make_synthetic.py --out data/synthetic_img --kind image --videos 600
    python tools/make_synthetic.py --out /tmp/hard --difficulty hard --set noise=8 \\
        --set actor_size=[0.04,0.06]

See datasets/SYNTHETIC.md for the layout and every knob.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from iared_video import synthetic


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """Parses ``KEY=VALUE`` pairs; VALUE is JSON (numbers, lists, true/false)."""
    knobs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            knobs[key] = json.loads(value)
        except json.JSONDecodeError:
            knobs[key] = value
    return knobs


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--kind", choices=("video", "image"), default="video")
    p.add_argument("--videos", "--images", "-n", dest="num", type=int, default=None,
                   help="number of videos/images (default: the library default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=None, help="number of classes (first K)")
    p.add_argument("--difficulty", choices=("easy", "medium", "hard"), default="medium")
    p.add_argument("--min-frames", type=int, default=None, help="video only")
    p.add_argument("--max-frames", type=int, default=None, help="video only")
    p.add_argument("--min-short-side", type=int, default=None)
    p.add_argument("--max-short-side", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other knob, VALUE as JSON (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the generator; returns the meta dict."""
    args = build_parser().parse_args(argv)
    knobs = _parse_set(args.set)
    for name in ("min_frames", "max_frames", "min_short_side", "max_short_side"):
        if getattr(args, name) is not None:
            knobs[name] = getattr(args, name)
    common = dict(seed=args.seed, difficulty=args.difficulty, num_workers=args.workers,
                  progress=not args.quiet, **knobs)
    if args.classes is not None:
        common["num_classes"] = args.classes
    start = time.perf_counter()
    if args.kind == "video":
        num = synthetic.DEFAULT_NUM_VIDEOS if args.num is None else args.num
        meta = synthetic.generate_video_dataset(args.out, num_videos=num, **common)
    else:
        num = synthetic.DEFAULT_NUM_IMAGES if args.num is None else args.num
        meta = synthetic.generate_image_dataset(args.out, num_images=num, **common)
    print(f"wrote {num} {args.kind}s, {meta['num_classes']} classes, to {args.out} "
          f"in {time.perf_counter() - start:.1f}s")
    return meta


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
