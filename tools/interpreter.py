#!/usr/bin/env python
"""IA-RED^2 demo: heatmaps and kept-patch panels for one image or video.

    python tools/interpreter.py -p IMAGE_OR_VIDEO -o OUTPUT_DIR [--cfg FILE] [--checkpoint FILE] [--debug]
                                [KEY VALUE ...]

Without ``--cfg`` a video uses the tiny synthetic TimeSformer config
(configs/Synthetic/tsf_tiny_iared.yaml) and an image the DeiT-S config (configs/IN1k/deit_s.yaml).
Without ``--checkpoint`` (or MODEL.PRETRAINED in the config) the weights are random: the
panels then only show the mechanics. The weights used (file and sha256, or "random
initialisation") are printed and written into the figure's title. Results go to
``OUTPUT_DIR/vis/`` (``*_figure.png``: the labelled figure). A user error (config, checkpoint,
input) ends with exit code 2 and one line; ``--debug`` shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from iared_video.methods import load_config
from iared_video.utils.cli import DEBUG_FLAG, InputError, run_tool
from iared_video.visualization import build_vis_model, describe_weights, looks_like_image, run_visualize

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CFGS = {"video": os.path.join(_ROOT, "configs", "Synthetic", "tsf_tiny_iared.yaml"),
                "image": os.path.join(_ROOT, "configs", "IN1k", "deit_s.yaml")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--path", required=True, help="an image or a video")
    parser.add_argument("-o", "--output", required=True, help="output directory (files under OUTPUT/vis/)")
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="yaml config (default: by input type)")
    parser.add_argument("--checkpoint", default="", help="weights (our checkpoint, TimeSformer .pyth or DeiT .pth)")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of a user error")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def _config(args: argparse.Namespace):
    """The demo's config: by input type unless ``--cfg``; missing default weights dropped (random init)."""
    if not os.path.exists(args.path):
        raise FileNotFoundError(f"input {args.path} does not exist")
    if not os.path.isfile(args.path):
        raise InputError(f"input {args.path} is not a file (the demo takes one image or video)")
    cfg_file = args.cfg_file or DEFAULT_CFGS["image" if looks_like_image(args.path) else "video"]
    opts = ["VISUALIZE.INPUT", args.path, "OUTPUT_DIR", args.output, "VISUALIZE.MAX_INPUTS", "1"]
    opts += ["TEST.CHECKPOINT_FILE_PATH", args.checkpoint] if args.checkpoint else []
    cfg = load_config(cfg_file, opts + list(args.opts))
    if not args.cfg_file and cfg.MODEL.PRETRAINED and not os.path.isfile(cfg.MODEL.PRETRAINED):
        logging.warning("default weights %s not found: using random weights", cfg.MODEL.PRETRAINED)
        cfg = load_config(cfg_file, opts + list(args.opts) + ["MODEL.PRETRAINED", ""])
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    cfg = _config(args)
    model = build_vis_model(cfg)
    print(f"weights: {describe_weights(cfg)}", flush=True)
    result = run_visualize(cfg, model, describe_weights(cfg, short=True))[0]
    top = result["predictions"][0]
    print(f"{args.path}: {top['class']} ({top['score']:.3f}), keep ratios {result['keep_ratio']}")
    print("wrote " + ", ".join(result["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
