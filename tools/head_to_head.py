#!/usr/bin/env python
"""Every registered method head to head on the synthetic video and image sets, in one command.

Options: ``--help``. The logic lives in ``iared_video/experiments/head_to_head.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.head_to_head import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
