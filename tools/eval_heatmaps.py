#!/usr/bin/env python
"""Score heatmaps (IA-RED^2 informative scores and attribution baselines) against ground-truth masks.

    python tools/eval_heatmaps.py --cfg FILE [--methods iared_g1 rollout ...] [--split val] [KEY VALUE ...]

``--help`` and ``iared_video.experiments.heatmaps`` (where the logic lives) say the rest.
"""

from __future__ import annotations

import sys

from iared_video.experiments.heatmaps import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
