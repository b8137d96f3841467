"""The ``VISUALIZE.ENABLE`` stage: every input of ``VISUALIZE.INPUT`` rendered under ``OUTPUT_DIR/vis/``."""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import Tensor, nn

from iared_video.config import is_video
from iared_video.datasets.bad_data import SampleError
from iared_video.datasets.views import ViewSpec, view_spec
from iared_video.utils.cli import InputError
from iared_video.utils.results import save_json
from iared_video.visualization.inputs import class_names, collect_inputs, load_with_indices
from iared_video.visualization.model import build_vis_model, describe_weights
from iared_video.visualization.render import VisOptions, visualize_input

logger = logging.getLogger(__name__)

__all__ = ["run_visualize"]


def _vis_options(cfg) -> VisOptions:
    """The rendering choices of ``cfg.VISUALIZE`` (validated by ``load_config``), and the drop threshold to draw
    on the colour bar when the method's scores meet one."""
    v = cfg.VISUALIZE
    from iared_video.methods import method_for_cfg

    threshold = method_for_cfg(cfg).drawn_threshold(cfg)
    return VisOptions(v.UPSAMPLE, float(v.ALPHA), v.ANIMATION, float(v.FPS), threshold)


def _default_source(cfg) -> str:
    """The test split: ``<TEST.SPLIT>.csv`` for videos, the ``TEST.SPLIT`` (else ``val``) folder for images."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if is_video(cfg):
        return os.path.join(data_dir, f"{cfg.TEST.SPLIT}.csv")
    test_dir = os.path.join(data_dir, cfg.TEST.SPLIT)
    return test_dir if os.path.isdir(test_dir) else os.path.join(data_dir, "val")


def _stem(path: str, index: int) -> str:
    """Output file stem of input ``index``: its position (keeps same-named inputs apart) and its name."""
    base = os.path.splitext(os.path.basename(path))[0] or "input"
    return f"{index:04d}_{base}"


def _try_load(path: str, spec: ViewSpec, failures: list[str], log: bool) -> tuple[Tensor, list[int] | None] | None:
    """``load_with_indices`` that records a failure (and logs it when ``log``) and returns None instead of raising."""
    try:
        return load_with_indices(path, spec)
    except (ValueError, OSError, RuntimeError) as exc:  # SampleError/DecodeError are RuntimeErrors
        reason = exc.reason if isinstance(exc, SampleError) else str(exc)
        if log:
            logger.warning("cannot visualise %s: %s", path, reason)
        failures.append(f"{path}: {reason}")
        return None


def _no_results_message(failures: list[str]) -> str:
    """One line for "nothing could be visualised": the reason itself for a single input."""
    if len(failures) == 1:
        return f"cannot visualise {failures[0]}"
    first = failures[0] if failures else "no inputs given"
    return f"no input could be visualised: {first}" + (f" (and {len(failures) - 1} more)" if failures else "")


def run_visualize(cfg, model: nn.Module | None = None, weights: str | None = None) -> list[dict[str, Any]]:
    """The visualisation stage: every input of ``VISUALIZE.INPUT`` (up to ``VISUALIZE.MAX_INPUTS``).

    Args:
        cfg: the config.
        model: the model to visualise (default ``build_vis_model(cfg)``).
        weights: what ``model`` holds, for the figure titles (default: ``describe_weights(cfg)`` when the
            model is built here, else nothing).

    Unreadable inputs are logged and skipped; if none can be visualised an ``InputError`` (a RuntimeError)
    says why (a single unreadable input is not logged as well). Returns the per-input summaries (also
    written as json next to the images).
    """
    opts, spec = _vis_options(cfg), view_spec(cfg)
    source = cfg.VISUALIZE.INPUT or _default_source(cfg)
    files = collect_inputs(source, cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_LABEL_SEPARATOR, cfg.DATA.PATH_PREFIX)
    files = files[:cfg.VISUALIZE.MAX_INPUTS]
    weights = weights if weights is not None else describe_weights(cfg, short=True) if model is None else ""
    model = model if model is not None else build_vis_model(cfg)
    names_file = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.CLASS_NAMES_FILE) if cfg.DATA.CLASS_NAMES_FILE else ""
    names = class_names(names_file, cfg.MODEL.NUM_CLASSES)
    out_dir = os.path.join(cfg.OUTPUT_DIR, "vis")
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, path in enumerate(files):
        loaded = _try_load(path, spec, failures, log=len(files) > 1)
        if loaded is None:
            continue
        stem = os.path.join(out_dir, _stem(path, i))
        results.append(visualize_input(model, loaded[0], spec, names, stem, opts, path, weights, loaded[1]))
        logger.info("visualised %s -> %s", path, results[-1]["files"])
    if not results:
        raise InputError(_no_results_message(failures))
    save_json(results, os.path.join(out_dir, "summary.json"))
    return results
