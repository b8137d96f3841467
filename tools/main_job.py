#!/usr/bin/env python
"""The README's main job on the synthetic set: dense -> IA-RED^2 (ours and the paper's) -> the paper's baselines and
the peers (ToMe, EViT, DynamicViT) at the same GMACs, tested, timed, heat maps scored, one table.

    python tools/main_job.py                 # video: tiny JointST TimeSformer, 8 classes
    python tools/main_job.py --image         # image: the small ViT on the synthetic image set
    python tools/main_job.py --pretrain      # first re-create weights/vit_micro_formula.pyth (tools/pretrain.py)
    python tools/main_job.py --from-scratch  # control: the dense stage alone, without pre-trained weights
    python tools/main_job.py SOLVER.MAX_EPOCH 2   # trailing KEY VALUE pairs apply to every stage

The dense stage starts from the committed formula-pre-trained weights (``MODEL.PRETRAINED`` in the dense
configs; inflated to the TimeSformer for video). Writes ``<output_dir>/{dense,iared,random,...}/`` (logs,
checkpoints, test results) and ``<output_dir>/main_job_results.json``; re-running resumes finished stages.
"""

from __future__ import annotations

import argparse
import sys
import time

from iared_video.config.defaults import SYNTHETIC_DATA_DIRS
from iared_video.experiments.main_job import run_main_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--image", action="store_true", help="run the image (DeiT) branch instead of video")
    parser.add_argument("--data_dir", default=None,
                        help="data folder, used as it is when present (generated when absent; the default folder is "
                             "regenerated when made with another recipe)")
    parser.add_argument("--output_dir", default=None, help="where the runs go")
    parser.add_argument("--pretrain", action="store_true",
                        help="re-create the pre-trained weights first (formula data + pre-training, see weights/)")
    parser.add_argument("--from-scratch", action="store_true", help="dense model without pre-trained weights")
    parser.add_argument("--init_method", default="tcp://localhost:9999")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs for every stage")
    args = parser.parse_args(argv)
    kind = "image" if args.image else "video"
    data_dir = args.data_dir or SYNTHETIC_DATA_DIRS[kind]
    output_dir = args.output_dir or f"./output/main_job_{kind}{'_scratch' if args.from_scratch else ''}"
    tic = time.time()
    if args.pretrain:
        from iared_video.experiments.pretrain import run_pretraining

        run_pretraining(command="python tools/main_job.py --pretrain", init_method=args.init_method)
    run_main_job(data_dir, output_dir, args.image, args.opts, args.init_method, from_scratch=args.from_scratch,
                 replace_stale_data=args.data_dir is None)
    print(f"main job ({kind}) finished in {time.time() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
