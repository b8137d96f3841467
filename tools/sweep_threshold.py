#!/usr/bin/env python
"""IA-RED^2 threshold / tau sweep: accuracy, GMACs and throughput per threshold (table, JSON, PNG).

Options: ``--help``. The logic lives in ``iared_video/experiments/sweep_threshold.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.sweep_threshold import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
