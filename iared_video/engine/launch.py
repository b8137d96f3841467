"""PySlowFast's run_net entry: arguments, the job's processes, and the stages each process runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from fvcore.common.config import CfgNode

import iared_video.engine.distributed as du
from iared_video.config import device_of
from iared_video.engine.logging import get_logger, setup_logging
from iared_video.utils.results import TestResults

__all__ = ["run_stages", "launch", "parse_args"]

logger = get_logger(__name__)


def parse_args(argv: Sequence[str] | None = None, description: str = "IA-RED^2 train/test") -> argparse.Namespace:
    """PySlowFast-style arguments: ``--cfg``, ``--init_method``, ``--shard_id``, ``--num_shards``, then opts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="yaml config merged over the defaults")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="process-group rendezvous (tcp://host:port or file:///path) when not under torchrun")
    parser.add_argument("--shard_id", type=int, default=None, help="index of this machine (overrides SHARD_ID)")
    parser.add_argument("--num_shards", type=int, default=None, help="number of machines (overrides NUM_SHARDS)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs merged last")
    return parser.parse_args(argv)


def _run_master_stages(cfg: CfgNode, info: du.DistInfo) -> None:
    """The single-process stages, on the master after train/test: visualise, then benchmark."""
    if info.rank != 0:
        return
    if cfg.VISUALIZE.ENABLE:
        from iared_video.visualization import run_visualize

        run_visualize(cfg)
    if cfg.BENCHMARK.ENABLE:
        from iared_video.engine.benchmark import run_benchmark_from_cfg

        run_benchmark_from_cfg(cfg)


def run_stages(info: du.DistInfo, cfg: CfgNode) -> TestResults | None:
    """Run the enabled stages of ``cfg`` in this process: train, test, then visualise and benchmark.

    Returns the test results (None when ``TEST.ENABLE`` is off), so callers in this process need not re-read
    ``test_results.json``.
    """
    from iared_video.engine.tester import test
    from iared_video.engine.trainer import train

    setup_logging(cfg.OUTPUT_DIR)
    logger.info("process %d/%d; config:\n%s", info.rank, info.world_size, cfg.dump())
    model, results = None, None
    if cfg.TRAIN.ENABLE:
        model = train(cfg, info)
    if cfg.TEST.ENABLE:
        results = test(cfg, info, model=model if not cfg.TEST.CHECKPOINT_FILE_PATH else None)
    _run_master_stages(cfg, info)
    return results


def launch(cfg: CfgNode, init_method: str, func: Callable = run_stages):
    """Run ``func(info, cfg)`` in each of the job's processes (torchrun or spawned).

    Returns what ``func`` returned when the job ran in this process (one process, or this torchrun rank);
    None when it ran in spawned processes.
    """
    backend = du.pick_backend(cfg.DIST_BACKEND, device_of(cfg).type == "cuda")
    num_local = 1 if du.under_torchrun() else cfg.NUM_GPUS
    return du.launch_job(func, num_local, (cfg,), init_method, cfg.SHARD_ID, cfg.NUM_SHARDS, backend)
