#!/usr/bin/env python
"""Score heatmaps (IA-RED^2 informative scores and attribution baselines) against ground-truth masks.

    python tools/eval_heatmaps.py --cfg FILE [--methods iared_g1 rollout ...] [--split val]
                                  [--max-samples N] [--out JSON] [--faithfulness]
                                  [--attention-blocks 0 1 2] [KEY VALUE ...]

``raw_attention`` is the class-token attention of block ``DROP.ATTENTION_BLOCK`` (default 1, the paper's
Block_1); ``raw_attention_b<k>`` that of block k. ``--attention-blocks 0 1 2`` adds one such row per block:
the paper's Table 5 block sweep.

The logic is ``iared_video.experiments.heatmaps``. Data: the synthetic sets. Video
(``DATA.DATASET kinetics``): ``<split>.csv`` videos with per-frame masks ``masks/<stem>.npz``; the centre
clip is decoded with the same index rule as val/test and the
masks are taken at the same frame indices and resized/cropped jointly with the frames (nearest
for masks). Images (``DATA.DATASET imagenet``): ``<split>/<class>/<name>`` with
``masks/<split>/<class>/<name>.png``, resized (nearest) and centre-cropped as timm's eval transform.
Binarisation: ``VISUALIZE.BINARIZE`` / ``VISUALIZE.BINARIZE_THRESHOLD`` (see ``interpret.metrics``).
``--faithfulness`` adds deletion/insertion areas (mean probability of the predicted class as patch
tokens are removed/added in heatmap order); it needs no masks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import cast

from iared_video.experiments.heatmaps import BLOCK_METHOD, evaluate, heatmap_table, method_list, samples_for
from iared_video.interpret.baselines import BASELINES
from iared_video.methods import load_config
from iared_video.models import IARED
from iared_video.utils.cli import DEBUG_FLAG, run_tool
from iared_video.utils.results import save_json
from iared_video.visualization import build_vis_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); trailing ``KEY VALUE`` pairs override the config."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True)
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"iared_g<j>, random, {', '.join(BASELINES)}, {BLOCK_METHOD}<k> (default: all)")
    parser.add_argument("--attention-blocks", type=int, nargs="+", default=[],
                        help=f"add {BLOCK_METHOD}<k> for each block k (the paper's Table 5: 0 1 2)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-samples", type=int, default=1 << 30)
    parser.add_argument("--out", default="", help="json file (default OUTPUT_DIR/heatmap_eval.json)")
    parser.add_argument("--faithfulness", action="store_true", help="add deletion/insertion areas")
    parser.add_argument("--steps", type=int, default=8, help="deletion/insertion steps")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of a user error")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Score every requested method's heatmaps; print the table and write the json (exit 2: unknown methods)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, list(args.opts))
    model = cast(IARED, build_vis_model(cfg))  # heatmaps come from an IA-RED^2 model
    methods, unknown = method_list(args.methods, args.attention_blocks, model.num_groups, len(model.backbone.blocks))
    if unknown:
        print(f"error: unknown methods {unknown}", file=sys.stderr)
        return 2
    samples = samples_for(cfg, args.split)
    results = evaluate(cfg, model, methods, samples, args.max_samples, args.faithfulness, args.steps)
    print(heatmap_table(results))
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "heatmap_eval.json")
    save_json({"split": args.split, "binarize": cfg.VISUALIZE.BINARIZE, "results": results}, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
