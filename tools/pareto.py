#!/usr/bin/env python
"""Accuracy vs GMACs and accuracy vs measured throughput for every method found under RESULTS.

Options: ``--help``. The logic lives in ``iared_video/experiments/pareto.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.pareto import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
