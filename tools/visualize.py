#!/usr/bin/env python
"""Write IA-RED^2 heatmaps and kept-patch panels for videos/images.

    python tools/visualize.py --cfg configs/Synthetic/tsf_tiny_iared.yaml [--input PATH] [--checkpoint FILE]
                              [--debug] [KEY VALUE ...]

The input is ``VISUALIZE.INPUT`` (or ``--input``): a video, an image, a folder or a split CSV
("" for the test split). Weights: ``MODEL.PRETRAINED`` and/or ``TEST.CHECKPOINT_FILE_PATH`` (or
``--checkpoint``); the weights used (file and sha256, or random initialisation) are printed and
written into every figure's title. Outputs go to ``OUTPUT_DIR/vis/`` (see ``iared_video.visualization``):
``*_figure.png`` is the labelled figure. A user error (config, checkpoint, input) ends with exit code
2 and one line; ``--debug`` shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from iared_video.methods import load_config
from iared_video.utils.cli import DEBUG_FLAG, run_tool
from iared_video.visualization import build_vis_model, describe_weights, run_visualize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="yaml config")
    parser.add_argument("--input", default=None, help="video, image, folder or split CSV (overrides VISUALIZE.INPUT)")
    parser.add_argument("--checkpoint", default="", help="weights to visualise (sets TEST.CHECKPOINT_FILE_PATH)")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of a user error")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    opts = list(args.opts) + (["VISUALIZE.INPUT", args.input] if args.input else [])
    opts += ["TEST.CHECKPOINT_FILE_PATH", args.checkpoint] if args.checkpoint else []
    cfg = load_config(args.cfg_file, opts)
    model = build_vis_model(cfg)
    print(f"weights: {describe_weights(cfg)}", flush=True)
    results = run_visualize(cfg, model, describe_weights(cfg, short=True))
    for res in results:
        top = res["predictions"][0]
        print(f"{res['input']}: {top['class']} ({top['score']:.3f}), keep {res['keep_ratio']} -> {res['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
