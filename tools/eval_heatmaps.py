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

import sys

from iared_video.experiments.heatmaps import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
