#!/usr/bin/env python
"""Input resolution (the paper's Table 4): dense, IA-RED^2 and fixed-ratio policies at each size.

Options: ``--help``. The logic lives in ``iared_video/experiments/sweep_resolution.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.sweep_resolution import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
