#!/usr/bin/env python
"""Data-pipeline benchmark: clips/s of decord vs PyAV, in-process and with loader workers.

Options: ``--help``. The logic lives in ``iared_video/experiments/benchmark_data.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.benchmark_data import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
