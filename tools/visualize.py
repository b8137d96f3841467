#!/usr/bin/env python
"""Write IA-RED^2 heatmaps and kept-patch panels for videos/images.

    python tools/visualize.py --cfg configs/Synthetic/tsf_tiny_iared.yaml [--input PATH] [KEY VALUE ...]

The input is ``VISUALIZE.INPUT`` (or ``--input``): a video, an image, a folder or a split CSV
("" for the test split). Weights: ``MODEL.PRETRAINED`` and/or ``TEST.CHECKPOINT_FILE_PATH``.
Outputs go to ``OUTPUT_DIR/vis/`` (see ``iared_video.visualization``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from iared_video.config import ConfigError, load_config
from iared_video.visualization import run_visualize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="yaml config")
    parser.add_argument("--input", default=None, help="video, image, folder or split CSV (overrides VISUALIZE.INPUT)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    opts = list(args.opts) + (["VISUALIZE.INPUT", args.input] if args.input else [])
    try:
        cfg = load_config(args.cfg_file, opts)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        results = run_visualize(cfg)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for res in results:
        top = res["predictions"][0]
        print(f"{res['input']}: {top['class']} ({top['score']:.3f}), keep {res['keep_ratio']} -> {res['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
