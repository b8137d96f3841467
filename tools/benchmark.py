#!/usr/bin/env python
"""Throughput of dense vs IA-RED^2 vs the other methods, against the GMACs limit (table + JSON).

Options: ``--help``. The logic lives in ``iared_video/experiments/benchmark.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.benchmark import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
