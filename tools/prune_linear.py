#!/usr/bin/env python
"""Magnitude pruning of linear layers, alone and with token dropping (paper Fig. 5).

Options: ``--help``. The logic lives in ``iared_video/experiments/prune_linear.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.prune_linear import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
