#!/usr/bin/env python
"""Warm start for a convolutional stem: fit it to the pre-trained linear patch embedding.

Options: ``--help``. The logic lives in ``iared_video/experiments/distill_stem.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.distill_stem import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
