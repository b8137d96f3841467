#!/usr/bin/env python
"""IA-RED^2 demo: heatmaps and kept-patch panels for one image or video.

    python tools/interpreter.py -p IMAGE_OR_VIDEO -o OUTPUT_DIR [--cfg FILE] [--checkpoint FILE] [KEY VALUE ...]

Without ``--cfg`` a video uses the tiny synthetic TimeSformer config
(configs/Synthetic/tsf_tiny_iared.yaml) and an image the DeiT-S config (configs/IN1k/deit_s.yaml).
Without ``--checkpoint`` (or MODEL.PRETRAINED in the config) the weights are random: the
panels then only show the mechanics. Results go to ``OUTPUT_DIR/vis/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from iared_video.config import ConfigError, load_config
from iared_video.visualization import looks_like_image, run_visualize

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CFGS = {"video": os.path.join(_ROOT, "configs", "Synthetic", "tsf_tiny_iared.yaml"),
                "image": os.path.join(_ROOT, "configs", "IN1k", "deit_s.yaml")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--path", required=True, help="an image or a video")
    parser.add_argument("-o", "--output", required=True, help="output directory (files under OUTPUT/vis/)")
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="yaml config (default: by input type)")
    parser.add_argument("--checkpoint", default="", help="weights (our checkpoint, TimeSformer .pyth or DeiT .pth)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    if not os.path.isfile(args.path):
        print(f"error: {args.path} is not a file", file=sys.stderr)
        return 1
    cfg_file = args.cfg_file or DEFAULT_CFGS["image" if looks_like_image(args.path) else "video"]
    opts = ["VISUALIZE.INPUT", args.path, "OUTPUT_DIR", args.output, "VISUALIZE.MAX_INPUTS", "1"]
    opts += ["TEST.CHECKPOINT_FILE_PATH", args.checkpoint] if args.checkpoint else []
    try:
        cfg = load_config(cfg_file, opts + list(args.opts))
        if not args.cfg_file and cfg.MODEL.PRETRAINED and not os.path.isfile(cfg.MODEL.PRETRAINED):
            logging.warning("default weights %s not found: using random weights", cfg.MODEL.PRETRAINED)
            cfg = load_config(cfg_file, opts + list(args.opts) + ["MODEL.PRETRAINED", ""])
        result = run_visualize(cfg)[0]
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    top = result["predictions"][0]
    print(f"{args.path}: {top['class']} ({top['score']:.3f}), keep ratios {result['keep_ratio']}")
    print("wrote " + ", ".join(result["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
