#!/usr/bin/env python
"""Learnability probe for a synthetic video set: a small 3D CNN (or the tiny TimeSformer) trained from scratch.

Options: ``--help``. The logic lives in ``iared_video/experiments/probe.py``.
"""

from __future__ import annotations

import sys

from iared_video.experiments.probe import main
from iared_video.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
