#!/usr/bin/env python
"""Score heatmaps (IA-RED^2 informative scores and attribution baselines) against ground-truth masks.

    python tools/eval_heatmaps.py --cfg FILE [--methods iared_g1 rollout ...] [--split val]
                                  [--max-samples N] [--out JSON] [--faithfulness]
                                  [--attention-blocks 0 1 2] [KEY VALUE ...]

``raw_attention`` is the class-token attention of block ``IARED.ATTENTION_BLOCK`` (default 1, the paper's
Block_1); ``raw_attention_b<k>`` that of block k. ``--attention-blocks 0 1 2`` adds one such row per block:
the paper's Table 5 block sweep.

Data: the synthetic sets. Video (``DATA.DATASET kinetics``): ``<split>.csv`` videos with per-frame
masks ``masks/<stem>.npz``; the centre clip is decoded with the same index rule as val/test and the
masks are taken at the same frame indices and resized/cropped jointly with the frames (nearest
for masks). Images (``DATA.DATASET imagenet``): ``<split>/<class>/<name>`` with
``masks/<split>/<class>/<name>.png``, resized (nearest) and centre-cropped as timm's eval transform.
Binarisation: ``VISUALIZE.BINARIZE`` / ``VISUALIZE.BINARIZE_THRESHOLD`` (see ``interpret.metrics``).
``--faithfulness`` adds deletion/insertion areas (mean probability of the predicted class as patch
tokens are removed/added in heatmap order); it needs no masks.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from typing import Iterator

import torch
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode

from iared_video.config import load_config
from iared_video.interpret.baselines import BASELINES, deletion_insertion, raw_attention
from iared_video.interpret.heatmap import policy_heatmaps
from iared_video.interpret.metrics import SegmentationMeter
from iared_video.models.policies import PAPER_ATTENTION_BLOCK
from iared_video.utils.cli import DEBUG_FLAG, run_tool
from iared_video.visualization import build_vis_model

logger = logging.getLogger("eval_heatmaps")
Sample = tuple[torch.Tensor, torch.Tensor, int, str]  # input, mask (T, H, W) bool, label, path


def video_samples(cfg, split: str) -> Iterator[Sample]:
    """Centre clip, centre crop, and the masks of the decoded frames (same transform)."""
    from iared_video.datasets.decoder import decode_clip
    from iared_video.datasets.kinetics import read_split_csv
    from iared_video.datasets.masks import load_masks
    from iared_video.datasets.transforms import frames_to_video, video_test_transform
    from iared_video.datasets.video_sampling import clip_indices

    d = cfg.DATA
    paths, labels = read_split_csv(os.path.join(d.PATH_TO_DATA_DIR, f"{split}.csv"), d.PATH_LABEL_SEPARATOR,
                                   d.PATH_PREFIX, d.PATH_TO_DATA_DIR)
    index_fn = functools.partial(clip_indices, num_frames=d.NUM_FRAMES, sampling_rate=d.SAMPLING_RATE,
                                 target_fps=d.TARGET_FPS, clip_idx=0, num_clips=1)
    transform = video_test_transform(d.TEST_CROP_SIZE, 1, d.MEAN, d.STD)
    for path, label in zip(paths, labels):
        stem = os.path.splitext(os.path.basename(path))[0]
        mask_path = os.path.join(d.PATH_TO_DATA_DIR, "masks", f"{stem}.npz")
        if not os.path.isfile(mask_path):
            logger.warning("no mask %s for %s: skipped", mask_path, path)
            continue
        clip = decode_clip(path, index_fn, d.DECODING_BACKEND)
        masks = torch.from_numpy(load_masks(mask_path)[clip.indices])
        video, mask = transform(frames_to_video(clip.frames), tv_tensors.Mask(masks))
        yield video.as_subclass(torch.Tensor).permute(1, 0, 2, 3), mask.as_subclass(torch.Tensor).bool(), label, path


def image_samples(cfg, split: str) -> Iterator[Sample]:
    """Eval-transformed images and their masks (short side to crop / crop_pct, nearest; centre crop)."""
    from iared_video.datasets.imagenet import find_classes, load_rgb_image, scan_image_folder
    from iared_video.datasets.masks import load_image_mask
    from iared_video.datasets.transforms import image_transform

    d, root = cfg.DATA, os.path.join(cfg.DATA.PATH_TO_DATA_DIR, split)
    paths, labels = scan_image_folder(root, find_classes(root))
    transform = image_transform(False, d.TEST_CROP_SIZE, d.MEAN, d.STD, crop_pct=d.IMAGE_CROP_PCT,
                                interpolation=d.IMAGE_INTERPOLATION)
    scale = int(d.TEST_CROP_SIZE / d.IMAGE_CROP_PCT)
    for path, label in zip(paths, labels):
        rel = os.path.splitext(os.path.relpath(path, root))[0] + ".png"
        mask_path = os.path.join(d.PATH_TO_DATA_DIR, "masks", split, rel)
        if not os.path.isfile(mask_path):
            logger.warning("no mask %s for %s: skipped", mask_path, path)
            continue
        mask = torch.from_numpy(load_image_mask(mask_path))[None].to(torch.uint8)
        mask = TF.center_crop(TF.resize(mask, [scale], InterpolationMode.NEAREST), [d.TEST_CROP_SIZE])
        yield transform(load_rgb_image(path)), mask.bool(), label, path


BLOCK_METHOD = "raw_attention_b"  # raw_attention_b<k>: class-token attention of block k


def attention_block_of(name: str) -> int | None:
    """Block index k of a ``raw_attention_b<k>`` method name, else None."""
    suffix = name[len(BLOCK_METHOD):] if name.startswith(BLOCK_METHOD) else ""
    return int(suffix) if suffix.isdigit() else None


def is_known_method(name: str) -> bool:
    """``iared_g<j>``, ``random``, ``raw_attention_b<k>`` or a ``BASELINES`` key."""
    return name.startswith("iared_g") or name == "random" or name in BASELINES or attention_block_of(name) is not None


def method_scores(model, name: str, x: torch.Tensor, target: torch.Tensor,
                  attention_block: int = PAPER_ATTENTION_BLOCK) -> torch.Tensor:
    """``(B, N)`` patch scores of method ``name`` (see ``is_known_method``); ``raw_attention`` reads block
    ``attention_block``."""
    if name.startswith("iared_g"):
        with torch.no_grad():
            return model(x, return_policy=True).scores[int(name[len("iared_g"):]) - 1]
    if name == "random":
        emb = model.backbone.embed(x)
        return torch.rand(emb.patches.shape[:2], device=x.device)
    block = attention_block_of(name)
    if block is not None:
        return raw_attention(model.backbone, x, target, block=block)
    if name == "raw_attention":
        return raw_attention(model.backbone, x, target, block=attention_block)
    return BASELINES[name](model.backbone, x, target)


def evaluate(cfg, model, methods: list[str], samples: Iterator[Sample], max_samples: int,
             faithfulness: bool, steps: int) -> dict[str, dict[str, float]]:
    meters = {m: SegmentationMeter(cfg.VISUALIZE.BINARIZE, cfg.VISUALIZE.BINARIZE_THRESHOLD) for m in methods}
    faith = {m: {"deletion": [], "insertion": []} for m in methods}
    device = next(model.parameters()).device
    for count, (x, mask, _, path) in enumerate(samples):
        if count >= max_samples:
            break
        x = x[None].to(device)
        with torch.no_grad():
            pred = model(x, modes=["keep_all"] * model.num_groups).argmax(-1)
        grid = model.backbone.embed(x).grid
        for name in methods:
            scores = method_scores(model, name, x, pred, cfg.IARED.ATTENTION_BLOCK).float()
            heat = policy_heatmaps([scores], grid, x.shape[-2:], cfg.VISUALIZE.UPSAMPLE)[0, 0]
            meters[name].update(heat.cpu(), mask.reshape(heat.shape))
            if faithfulness:
                curves = deletion_insertion(model.backbone, x, scores, pred, steps)
                for key in ("deletion", "insertion"):
                    faith[name][key].append(float(curves[key].mean()))
        logger.info("scored %s", path)
    results = {}
    for name in methods:
        results[name] = meters[name].compute()
        for key, values in faith[name].items():
            if values:
                results[name][f"{key}_auc"] = sum(values) / len(values)
    return results


def method_list(requested: list[str] | None, attention_blocks: list[int], num_groups: int,
                depth: int) -> tuple[list[str], list[str]]:
    """Methods to score (``requested`` or all, plus ``raw_attention_b<k>`` per attention block) and the unknown ones
    (names no method has, or blocks the backbone does not have)."""
    methods = requested or [f"iared_g{j + 1}" for j in range(num_groups)] + ["random", *BASELINES]
    methods = methods + [f"{BLOCK_METHOD}{k}" for k in attention_blocks if f"{BLOCK_METHOD}{k}" not in methods]
    unknown = [m for m in methods if not is_known_method(m) or (attention_block_of(m) or 0) >= depth]
    return methods, unknown


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One row per method, one column per metric."""
    keys = [k for k in next(iter(results.values())) if k != "num_samples"]
    lines = ["method".ljust(16) + "".join(k[:14].rjust(16) for k in keys)]
    for name, row in results.items():
        lines.append(name.ljust(16) + "".join(f"{row[k]:16.4f}" for k in keys))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True)
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"iared_g<j>, random, {', '.join(BASELINES)}, {BLOCK_METHOD}<k> (default: all)")
    parser.add_argument("--attention-blocks", type=int, nargs="+", default=[],
                        help=f"add {BLOCK_METHOD}<k> for each block k (the paper's Table 5: 0 1 2)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-samples", type=int, default=1 << 30)
    parser.add_argument("--out", default="", help="json file (default OUTPUT_DIR/heatmap_eval.json)")
    parser.add_argument("--faithfulness", action="store_true", help="add deletion/insertion areas")
    parser.add_argument("--steps", type=int, default=8, help="deletion/insertion steps")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of a user error")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, list(args.opts))
    model = build_vis_model(cfg)
    methods, unknown = method_list(args.methods, args.attention_blocks, model.num_groups, len(model.backbone.blocks))
    if unknown:
        print(f"error: unknown methods {unknown}", file=sys.stderr)
        return 2
    is_video = cfg.MODEL.MODEL_NAME == "timesformer"
    samples = (video_samples if is_video else image_samples)(cfg, args.split)
    results = evaluate(cfg, model, methods, samples, args.max_samples, args.faithfulness, args.steps)
    print(format_table(results))
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "heatmap_eval.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"split": args.split, "binarize": cfg.VISUALIZE.BINARIZE, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
