#!/usr/bin/env python
"""D (number of groups) at similar GMACs: per D, the threshold whose GMACs are nearest the target.

Options: ``--help``. The logic lives in ``iared_video/experiments/sweep_groups.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.sweep_groups import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
