"""Warm start for a convolutional stem: fit it to the pre-trained linear patch embedding, then train as usual.

A conv stem (``MODEL.STEM_CHANNELS``) has no pre-trained weights: under pre-trained blocks it starts as noise and,
within a short schedule, never catches up (docs/experiment_log.md, "why the conv stem does not fit"). This tool
gives it a start: the stem is regressed (mean squared error, Adam) onto the tokens the checkpoint's linear
embedding gives the same training clips, inflated to ``MODEL.PATCH_FRAMES`` as usual, for ``--steps`` batches of
the training loader (its augmentation included; labels unused). Everything else comes from ``MODEL.PRETRAINED``
as it would without the stem. The output is a checkpoint that ``MODEL.PRETRAINED`` takes:

    python tools/distill_stem.py --cfg configs/Synthetic/tsf_tiny_dense.yaml --out weights/stem_start.pyth \
        MODEL.STEM_CHANNELS "[16, 48]" DATA.PATH_TO_DATA_DIR data/synthetic
    python tools/run_net.py --cfg configs/Synthetic/tsf_tiny_dense.yaml MODEL.STEM_CHANNELS "[16, 48]" \
        MODEL.PRETRAINED weights/stem_start.pyth DATA.PATH_TO_DATA_DIR data/synthetic

The CLI is ``tools/distill_stem.py``.
"""

from __future__ import annotations

import argparse
import itertools
from typing import cast

import torch
from fvcore.common.config import CfgNode
from torch import nn
from tqdm import tqdm

from iared_video.config import ConfigError, device_of
from iared_video.datasets.loader import construct_loader
from iared_video.engine.checkpoint import save_checkpoint
from iared_video.experiments.benchmark import add_model_args, cfg_from_args
from iared_video.methods import build_model
from iared_video.models import PolicyModel

__all__ = ["distill_stem", "main"]


def _check(cfg: CfgNode) -> None:
    if not list(cfg.MODEL.STEM_CHANNELS):
        raise ConfigError("distill_stem needs a conv stem: set MODEL.STEM_CHANNELS, e.g. '[16, 48]'")
    if not cfg.MODEL.PRETRAINED:
        raise ConfigError("distill_stem needs MODEL.PRETRAINED: the checkpoint whose linear patch embedding the "
                          "stem learns to imitate")


def distill_stem(cfg: CfgNode, steps: int, lr: float = 1e-3) -> tuple[PolicyModel, list[float]]:
    """The model of ``cfg`` (conv stem, the rest from ``MODEL.PRETRAINED``) with its stem regressed onto the
    pre-trained linear embedding over ``steps`` training batches; returns it with the loss of every step."""
    _check(cfg)
    linear_cfg = cfg.clone()
    linear_cfg.defrost()
    linear_cfg.MODEL.STEM_CHANNELS = []
    device = device_of(cfg)
    teacher = cast(PolicyModel, build_model(linear_cfg)).backbone.patch_embed.to(device).eval()
    model = cast(PolicyModel, build_model(cfg)).to(device)
    stem = model.backbone.patch_embed.train()
    optimizer = torch.optim.Adam(stem.parameters(), lr=lr)
    loader = construct_loader(cfg, "train")
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch, reshuffled
    losses = []
    for batch in tqdm(itertools.islice(batches, steps), total=steps, desc="distill stem"):
        clips = batch["inputs"].to(device)
        with torch.no_grad():
            target = teacher(clips)
        loss = nn.functional.mse_loss(stem(clips), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, distill, write the checkpoint; returns its summary (also stored in the checkpoint)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--out", required=True, help="checkpoint to write (for MODEL.PRETRAINED)")
    parser.add_argument("--steps", type=int, default=600, help="training batches to regress on")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    cfg = cfg_from_args(args)
    torch.manual_seed(cfg.RNG_SEED)
    model, losses = distill_stem(cfg, args.steps, args.lr)
    tail = losses[-min(50, len(losses)):]
    summary = {"steps": args.steps, "lr": args.lr, "first_loss": losses[0], "last_loss_mean": sum(tail) / len(tail),
               "stem_channels": list(cfg.MODEL.STEM_CHANNELS), "teacher": cfg.MODEL.PRETRAINED}
    save_checkpoint(args.out, {"model_state": model.state_dict(), "stem_distillation": summary})
    print(f"stem distilled: loss {losses[0]:.4f} -> {summary['last_loss_mean']:.4f} (mean of the last {len(tail)} "
          f"steps); wrote {args.out}")
    return summary
