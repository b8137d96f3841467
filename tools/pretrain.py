#!/usr/bin/env python
"""Formula-driven pre-training of the embedded backbone: data, training, exported weights with their recipe.

    python tools/pretrain.py                                  # re-create weights/vit_micro_formula.pyth
    python tools/pretrain.py --weights /tmp/w.pyth --classes 10 --per-class 20 SOLVER.MAX_EPOCH 1

Generates the FractalDB-style set (tools/make_formula.py) unless it is there, trains
configs/Synthetic/vit_micro_formula_pretrain.yaml through the ordinary trainer (resumable), and writes the
model weights plus a JSON sidecar (command, recipe, generator version, val error, sha256).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from iared_video.experiments.pretrain import DEFAULT_RECIPE, PretrainRecipe, run_pretraining


def main(argv: list[str] | None = None) -> int:
    d = DEFAULT_RECIPE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=d.config, help="pre-training yaml")
    parser.add_argument("--weights", default=d.weights, help="exported weights (sidecar: same name, .json)")
    parser.add_argument("--data_dir", default="./data/formula", help="formula set (generated when absent)")
    parser.add_argument("--output_dir", default="./output/pretrain/vit_micro_formula")
    parser.add_argument("--classes", type=int, default=d.num_classes)
    parser.add_argument("--per-class", type=int, default=d.per_class)
    parser.add_argument("--val-per-class", type=int, default=d.val_per_class)
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--init_method", default="tcp://localhost:9999")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    recipe = PretrainRecipe(config=args.cfg, weights=args.weights, num_classes=args.classes,
                            per_class=args.per_class, val_per_class=args.val_per_class, size=args.size,
                            seed=args.seed, opts=tuple(args.opts))
    command = "python tools/pretrain.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    record = run_pretraining(recipe, args.data_dir, args.output_dir, command.strip(), args.init_method)
    print(f"wrote {record['recipe']['weights']} (sha256 {record['sha256']}, val top-1 error {record['val_top1_err']})")
    return 0


if __name__ == "__main__":
    from iared_video.utils.cli import run_tool

    sys.exit(run_tool(main))
