"""Heatmap evaluation: IA-RED^2 informative scores and attribution baselines scored against ground-truth masks.

``raw_attention`` is the class-token attention of block ``DROP.ATTENTION_BLOCK`` (default 1, the paper's
Block_1); ``raw_attention_b<k>`` that of block k (the paper's Table 5 block sweep).

Data: the synthetic sets, through the test-view layer (``iared_video.datasets.views``). Video
(``DATA.DATASET kinetics``): ``<split>.csv`` videos with per-frame masks ``masks/<stem>.npz``; the centre
clip is decoded with the same index rule as val/test and the masks are taken at the same frame indices and
resized/cropped jointly with the frames (nearest for masks). Images (``DATA.DATASET imagenet``):
``<split>/<class>/<name>`` with ``masks/<split>/<class>/<name>.png``, resized (nearest) and centre-cropped as
timm's eval transform. Binarisation: ``VISUALIZE.BINARIZE`` / ``VISUALIZE.BINARIZE_THRESHOLD`` (see
``interpret.metrics``). Faithfulness adds deletion/insertion areas (mean probability of the predicted class
as patch tokens are removed/added in heatmap order); it needs no masks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import torch

from iared_video.config import is_video
from iared_video.datasets.masks import image_mask_path, video_mask_path
from iared_video.datasets.views import load_image_view_with_mask, load_video_view_with_masks, view_spec
from iared_video.interpret.baselines import BASELINES, deletion_insertion, raw_attention
from iared_video.interpret.heatmap import policy_heatmaps
from iared_video.interpret.metrics import SegmentationMeter
from iared_video.methods import load_config
from iared_video.methods.base import depth_quarters
from iared_video.methods.fixed_ratio import PAPER_ATTENTION_BLOCK, temporal_difference
from iared_video.models import PolicyModel
from iared_video.utils.cli import DEBUG_FLAG
from iared_video.utils.results import format_table, save_json
from iared_video.visualization import build_vis_model

logger = logging.getLogger(__name__)

__all__ = ["Sample", "video_samples", "image_samples", "samples_for", "BLOCK_METHOD", "attention_block_of",
           "REDUCER_MAPS", "is_known_method", "method_scores", "policy_map_scores", "evaluate", "method_list",
           "heatmap_table"]

Sample = tuple[torch.Tensor, torch.Tensor, int, str]  # input, mask (T, H, W) bool, label, path


def _with_masks(paths: Sequence[str], labels: Sequence[int], mask_of: Callable[[str], str],
                load: Callable[[str, str], tuple[torch.Tensor, torch.Tensor]]) -> Iterator[Sample]:
    """``(input, mask, label, path)`` per item whose mask file exists; the others are skipped with a warning."""
    for path, label in zip(paths, labels):
        mask_path = mask_of(path)
        if not os.path.isfile(mask_path):
            logger.warning("no mask %s for %s: skipped", mask_path, path)
            continue
        x, mask = load(path, mask_path)
        yield x, mask, label, path


def video_samples(cfg, split: str) -> Iterator[Sample]:
    """Centre clip, centre crop, and the masks of the decoded frames (same transform); videos without masks are
    skipped with a warning."""
    from iared_video.datasets.kinetics import read_split_csv

    d, spec = cfg.DATA, view_spec(cfg)
    paths, labels = read_split_csv(os.path.join(d.PATH_TO_DATA_DIR, f"{split}.csv"), d.PATH_LABEL_SEPARATOR,
                                   d.PATH_PREFIX, d.PATH_TO_DATA_DIR)
    yield from _with_masks(paths, labels, lambda path: video_mask_path(d.PATH_TO_DATA_DIR, path),
                           lambda path, mask_path: load_video_view_with_masks(path, mask_path, spec))


def image_samples(cfg, split: str) -> Iterator[Sample]:
    """Eval-transformed images and their masks (short side to crop / crop_pct, nearest; centre crop); images
    without masks are skipped with a warning."""
    from iared_video.datasets.imagenet import find_classes, scan_image_folder

    data_dir, spec = cfg.DATA.PATH_TO_DATA_DIR, view_spec(cfg)
    root = os.path.join(data_dir, split)
    paths, labels = scan_image_folder(root, find_classes(root))
    yield from _with_masks(paths, labels, lambda path: image_mask_path(data_dir, split, path),
                           lambda path, mask_path: load_image_view_with_mask(path, mask_path, spec))


def samples_for(cfg, split: str) -> Iterator[Sample]:
    """``video_samples`` for a video model, ``image_samples`` for an image model."""
    return (video_samples if is_video(cfg) else image_samples)(cfg, split)


def policy_map_scores(model: PolicyModel, cfg, max_samples: int, split: str = "val") -> dict[str, float]:
    """Segmentation scores (``SegmentationMeter``) of a model's own map against the masks of ``split``: the
    scores of its last group that acts (a model whose policy acts nowhere: group 1's, all ones), over the first
    ``max_samples`` views."""
    meter = SegmentationMeter(cfg.VISUALIZE.BINARIZE, cfg.VISUALIZE.BINARIZE_THRESHOLD)
    acting = [j for j in range(model.num_groups) if model.policy.acts_on(j)] or [0]
    for count, (x, mask, _, _) in enumerate(samples_for(cfg, split)):
        if count >= max_samples:
            break
        with torch.no_grad():
            out = model(x[None], return_policy=True)
        maps = policy_heatmaps([out.scores[acting[-1]]], out.grid, x.shape[-2:])[0, 0]
        meter.update(maps, mask.reshape(maps.shape))
    return meter.compute()


BLOCK_METHOD = "raw_attention_b"  # raw_attention_b<k>: class-token attention of block k


def attention_block_of(name: str) -> int | None:
    """Block index k of a ``raw_attention_b<k>`` method name, else None."""
    suffix = name[len(BLOCK_METHOD):] if name.startswith(BLOCK_METHOD) else ""
    return int(suffix) if suffix.isdigit() else None


#: Maps of the token-reduction baselines, beside the attribution ``BASELINES``, computed on the explained model: the
#: temporal-difference baseline's scores (video) and EViT's selection rule (head-averaged class attention at EViT's
#: first default location, a quarter of the depth: on 6 blocks block 1, which ``raw_attention`` reads too).
REDUCER_MAPS = ("temporal_diff", "evit_attention")


def is_known_method(name: str) -> bool:
    """``iared_g<j>``, ``random``, ``raw_attention_b<k>``, a ``REDUCER_MAPS`` name or a ``BASELINES`` key."""
    return (name.startswith("iared_g") or name == "random" or name in BASELINES or name in REDUCER_MAPS
            or attention_block_of(name) is not None)


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
    if name == "temporal_diff":
        with torch.no_grad():
            return temporal_difference(model.backbone.embed(x), x.shape[0])
    if name == "evit_attention":
        return raw_attention(model.backbone, x, target, block=depth_quarters(len(model.backbone.blocks))[0])
    block = attention_block_of(name)
    if block is not None:
        return raw_attention(model.backbone, x, target, block=block)
    if name == "raw_attention":
        return raw_attention(model.backbone, x, target, block=attention_block)
    return BASELINES[name](model.backbone, x, target)


def evaluate(cfg, model, methods: list[str], samples: Iterator[Sample], max_samples: int,
             faithfulness: bool, steps: int) -> dict[str, dict[str, float]]:
    """Segmentation scores (and with ``faithfulness`` deletion/insertion areas) of each method's heatmaps over
    the first ``max_samples`` samples; each method explains the model's own prediction (all tokens kept)."""
    meters = {m: SegmentationMeter(cfg.VISUALIZE.BINARIZE, cfg.VISUALIZE.BINARIZE_THRESHOLD) for m in methods}
    faith: dict[str, dict[str, list[float]]] = {m: {"deletion": [], "insertion": []} for m in methods}
    device = next(model.parameters()).device
    for count, (x, mask, _, path) in enumerate(samples):
        if count >= max_samples:
            break
        x = x[None].to(device)
        with torch.no_grad():
            pred = model(x, modes=["keep_all"] * model.num_groups).argmax(-1)
        grid = model.backbone.embed(x).grid
        for name in methods:
            scores = method_scores(model, name, x, pred, cfg.DROP.ATTENTION_BLOCK).float()
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
                depth: int, video: bool = True) -> tuple[list[str], list[str]]:
    """Methods to score (``requested`` or all, plus ``raw_attention_b<k>`` per attention block) and the unknown ones
    (names no method has, blocks the backbone does not have, ``temporal_diff`` on images)."""
    reducers = [m for m in REDUCER_MAPS if video or m != "temporal_diff"]
    methods = requested or [f"iared_g{j + 1}" for j in range(num_groups)] + ["random", *reducers, *BASELINES]
    methods = methods + [f"{BLOCK_METHOD}{k}" for k in attention_blocks if f"{BLOCK_METHOD}{k}" not in methods]
    unknown = [m for m in methods if not is_known_method(m) or (attention_block_of(m) or 0) >= depth
               or (m == "temporal_diff" and not video)]
    return methods, unknown


def heatmap_table(results: dict[str, dict[str, float]]) -> str:
    """One row per method, one column per metric (``num_samples`` left out), through the project's one table writer."""
    rows = [{"method": name, **{k: v for k, v in row.items() if k != "num_samples"}} for name, row in results.items()]
    return format_table(rows)


CLI_DOC = """Score heatmaps (IA-RED^2 informative scores and attribution baselines) against ground-truth masks.

    python tools/eval_heatmaps.py --cfg FILE [--methods iared_g1 rollout ...] [--split val]
                                  [--max-samples N] [--out JSON] [--faithfulness]
                                  [--attention-blocks 0 1 2] [KEY VALUE ...]

``raw_attention`` is the class-token attention of block ``DROP.ATTENTION_BLOCK`` (default 1, the paper's
Block_1); ``raw_attention_b<k>`` that of block k. ``--attention-blocks 0 1 2`` adds one such row per block:
the paper's Table 5 block sweep.

The logic is ``iared_video.experiments.heatmaps``. Data: the synthetic sets. Video
(``DATA.DATASET kinetics``): ``<split>.csv`` videos with per-frame masks ``masks/<stem>.npz``; the centre
clip is decoded with the same index rule as val/test and the
masks are taken at the same frame indices and resized/cropped jointly with the frames (nearest
for masks). Images (``DATA.DATASET imagenet``): ``<split>/<class>/<name>`` with
``masks/<split>/<class>/<name>.png``, resized (nearest) and centre-cropped as timm's eval transform.
Binarisation: ``VISUALIZE.BINARIZE`` / ``VISUALIZE.BINARIZE_THRESHOLD`` (see ``interpret.metrics``).
``--faithfulness`` adds deletion/insertion areas (mean probability of the predicted class as patch
tokens are removed/added in heatmap order); it needs no masks.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); trailing ``KEY VALUE`` pairs override the config."""
    parser = argparse.ArgumentParser(description=CLI_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    """Score every requested method's heatmaps; print the table and write the json (exit 2: unknown methods)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s")
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, list(args.opts))
    model = cast(PolicyModel, build_vis_model(cfg))  # heatmaps come from an IA-RED^2 model
    methods, unknown = method_list(args.methods, args.attention_blocks, model.num_groups, len(model.backbone.blocks),
                                   is_video(cfg))
    if unknown:
        print(f"error: unknown methods {unknown}", file=sys.stderr)
        return 2
    samples = samples_for(cfg, args.split)
    results = evaluate(cfg, model, methods, samples, args.max_samples, args.faithfulness, args.steps)
    print(heatmap_table(results))
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "heatmap_eval.json")
    save_json({"split": args.split, "binarize": cfg.VISUALIZE.BINARIZE, "results": results}, out)
    return 0
