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

import sys

from iared_video.engine.launch import launch, parse_args
from iared_video.methods import load_config
from iared_video.utils.cli import run_tool


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = list(args.opts)
    if args.shard_id is not None:
        opts += ["SHARD_ID", str(args.shard_id)]
    if args.num_shards is not None:
        opts += ["NUM_SHARDS", str(args.num_shards)]
    cfg = load_config(args.cfg_file, opts)
    launch(cfg, args.init_method)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
