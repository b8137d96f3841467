"""The job's processes (torchrun or spawned) and the training stages each process runs (train, then test).

``tools/run_net.py`` parses the command line and adds the single-process stages (visualise, benchmark).
"""

from __future__ import annotations

from collections.abc import Callable

from fvcore.common.config import CfgNode

import iared_video.engine.distributed as du
from iared_video.config import device_of
from iared_video.engine.logging import get_logger, setup_logging
from iared_video.engine.tester import test
from iared_video.engine.trainer import train
from iared_video.utils.results import TestResults

__all__ = ["run_stages", "launch"]

logger = get_logger(__name__)


def run_stages(info: du.DistInfo, cfg: CfgNode) -> TestResults | None:
    """Run the enabled stages of ``cfg`` in this process: train, then test.

    Returns the test results (None when ``TEST.ENABLE`` is off), so callers in this process need not re-read
    ``test_results.json``.
    """
    setup_logging(cfg.OUTPUT_DIR)
    logger.info("process %d/%d; config:\n%s", info.rank, info.world_size, cfg.dump())
    model, results = None, None
    if cfg.TRAIN.ENABLE:
        model = train(cfg, info)
    if cfg.TEST.ENABLE:
        results = test(cfg, info, model=model if not cfg.TEST.CHECKPOINT_FILE_PATH else None)
    return results


def launch(cfg: CfgNode, init_method: str, func: Callable = run_stages):
    """Run ``func(info, cfg)`` in each of the job's processes (torchrun or spawned).

    Returns what ``func`` returned when the job ran in this process (one process, or this torchrun rank);
    None when it ran in spawned processes.
    """
    backend = du.pick_backend(cfg.DIST_BACKEND, device_of(cfg).type == "cuda")
    num_local = 1 if du.under_torchrun() else cfg.NUM_GPUS
    return du.launch_job(func, num_local, (cfg,), init_method, cfg.SHARD_ID, cfg.NUM_SHARDS, backend)
