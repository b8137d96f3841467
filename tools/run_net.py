#!/usr/bin/env python
"""Train / test / visualise / benchmark from one config (PySlowFast's run_net).

    python tools/run_net.py --cfg configs/Synthetic/tsf_tiny_dense.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 2 tools/run_net.py --cfg FILE DEVICE cpu

``TRAIN.ENABLE``, ``TEST.ENABLE``, ``VISUALIZE.ENABLE`` and ``BENCHMARK.ENABLE`` choose the stages.
Without torchrun, ``NUM_GPUS`` processes are spawned per machine (gloo on CPU, nccl on GPU).
A user error (config, checkpoint, data split, input) ends with exit code 2 and one line on stderr;
``--debug`` (or ``LOG_LEVEL DEBUG``) shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fvcore.common.config import CfgNode

from iared_video.engine.benchmark import run_benchmark_from_cfg
from iared_video.engine.distributed import DistInfo
from iared_video.engine.launch import launch, run_stages
from iared_video.methods import load_config
from iared_video.utils.cli import run_tool
from iared_video.visualization import run_visualize


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """PySlowFast-style arguments: ``--cfg``, ``--init_method``, ``--shard_id``, ``--num_shards``, then opts."""
    parser = argparse.ArgumentParser(description="IA-RED^2 train/test")
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="yaml config merged over the defaults")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="process-group rendezvous (tcp://host:port or file:///path) when not under torchrun")
    parser.add_argument("--shard_id", type=int, default=None, help="index of this machine (overrides SHARD_ID)")
    parser.add_argument("--num_shards", type=int, default=None, help="number of machines (overrides NUM_SHARDS)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs merged last")
    return parser.parse_args(argv)


def run_net_stages(info: DistInfo, cfg: CfgNode) -> None:
    """Every enabled stage in this process: train and test (all ranks), then visualise and benchmark (master)."""
    run_stages(info, cfg)
    if info.rank != 0:
        return
    if cfg.VISUALIZE.ENABLE:
        run_visualize(cfg)
    if cfg.BENCHMARK.ENABLE:
        run_benchmark_from_cfg(cfg)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = list(args.opts)
    if args.shard_id is not None:
        opts += ["SHARD_ID", str(args.shard_id)]
    if args.num_shards is not None:
        opts += ["NUM_SHARDS", str(args.num_shards)]
    cfg = load_config(args.cfg_file, opts)
    launch(cfg, args.init_method, run_net_stages)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
