"""Master-only logging to stdout and ``OUTPUT_DIR/stdout.log``, and ``json_stats:`` lines."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import simplejson

from iared_video.engine.distributed import is_master

__all__ = ["setup_logging", "get_logger", "log_json_stats", "format_stats"]

_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s:%(lineno)d: %(message)s"
_ROOT = "iared_video"


def setup_logging(output_dir: str | None = None, level: str | None = None) -> None:
    """Log ``level`` to stdout and ``output_dir/stdout.log`` on the master; silence other ranks.

    ``level`` defaults to the environment's ``LOG_LEVEL`` (``utils.cli.run_tool`` sets it from the
    ``LOG_LEVEL`` config opt), else INFO.
    """
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logger = logging.getLogger(_ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    if not is_master():
        logger.setLevel(logging.ERROR)
        logger.addHandler(logging.NullHandler())
        return
    logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
    formatter = logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(output_dir, "stdout.log"), mode="a")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)


def get_logger(name: str) -> logging.Logger:
    """A logger under the package root (``iared_video.<name>``)."""
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def format_stats(stats: Mapping[str, Any]) -> str:
    """Floats rounded for reading; ints and strings kept."""
    clean = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in stats.items()}
    return simplejson.dumps(clean, sort_keys=False, ignore_nan=True)


def log_json_stats(stats: Mapping[str, Any], logger: logging.Logger | None = None) -> None:
    """Write one ``json_stats: {...}`` line (PySlowFast convention) on the master."""
    (logger or get_logger(__name__)).info("json_stats: %s", format_stats(stats))
