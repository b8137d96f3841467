"""Learnability probe for a synthetic video set: a small 3D CNN (or the tiny TimeSformer) trained from scratch.

Answers "can a small model learn this set at all?" independently of the
transformer code: every video is decoded once (decord, resized to SIZE x SIZE,
NUM_FRAMES frames spread over the whole video), a four-block 3D CNN is
trained with Adam, and train/val/test accuracy is printed every few epochs and
written as JSON. Chance is 1 / num_classes.

    python tools/probe_synthetic.py --data data/synthetic --epochs 30 --out probe.json
    python tools/probe_synthetic.py --generate /tmp/syn --epochs 30   # default set, generated first
    python tools/probe_synthetic.py --data data/synthetic --model tsf --size 96 --epochs 5

``--model tsf`` trains the main job's tiny JointST TimeSformer (patch 16, width 96, depth 6; from scratch with the
embedding initialisation that lets a ViT learn these sets) on the very same tensors, loop and optimiser, so the two
models' curves compare directly. Trailing ``KEY VALUE`` pairs change its config, e.g. the main job's start
(``MODEL.PRETRAINED weights/vit_micro_formula.pyth MODEL.POS_EMBED_INIT_STD 0.02 MODEL.TIME_EMBED_INIT_STD 0.0``)
or a conv stem (``MODEL.STEM_CHANNELS '[16, 48]'``). The CLI is ``tools/probe_synthetic.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from iared_video.experiments.main_job import SYNTHETIC_CONFIG_DIR
from iared_video.methods import build_model, load_config
from iared_video.models import PolicyModel
from iared_video.synthetic import SPLITS, generate_video_dataset
from iared_video.utils.results import save_json

__all__ = ["load_split_tensors", "small_3d_cnn", "TinyTimeSformer", "build_probe", "accuracy", "train_epoch", "main"]


def load_split_tensors(root: str, num_frames: int, size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Decode every video listed in ``meta.json`` once: ``{split: (clips (N,3,T,S,S) in [0,1], labels)}``."""
    import decord

    with open(os.path.join(root, "meta.json")) as f:
        videos = json.load(f)["videos"]
    clips: dict[str, list] = {s: [] for s in SPLITS}
    labels: dict[str, list] = {s: [] for s in SPLITS}
    for video in tqdm(videos, desc="decode"):
        reader = decord.VideoReader(os.path.join(root, video["path"]), width=size, height=size)
        index = np.linspace(0, len(reader) - 1, num_frames).round().astype(int).tolist()
        clips[video["split"]].append(reader.get_batch(index).asnumpy())
        labels[video["split"]].append(video["label"])
    return {s: (torch.from_numpy(np.stack(clips[s])).permute(0, 4, 1, 2, 3).float().div(255),
                torch.tensor(labels[s])) for s in SPLITS if clips[s]}


def small_3d_cnn(num_classes: int) -> nn.Module:
    """Four conv-BN-ReLU-pool blocks (16-32-64-64 channels), global pooling, linear classifier."""
    def block(cin: int, cout: int, pool: tuple[int, int, int]) -> nn.Sequential:
        return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(), nn.MaxPool3d(pool))

    return nn.Sequential(block(3, 16, (1, 2, 2)), block(16, 32, (1, 2, 2)), block(32, 64, (2, 2, 2)),
                         block(64, 64, (2, 2, 2)), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, num_classes))


TSF_CONFIG = str(SYNTHETIC_CONFIG_DIR / "tsf_tiny_dense.yaml")


class TinyTimeSformer(nn.Module):
    """The main job's dense tiny TimeSformer (built from ``TSF_CONFIG``) on clips in [0, 1]."""

    model: PolicyModel
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_classes: int, size: int, frames: int, opts: list[str] | None = None) -> None:
        super().__init__()
        # From scratch (the probe's question), with the embedding initialisation that lets a ViT learn these sets;
        # ``opts`` (KEY VALUE pairs of the config) come last: another backbone recipe on the same tensors.
        cfg = load_config(TSF_CONFIG, ["MODEL.NUM_CLASSES", str(num_classes), "DATA.NUM_FRAMES", str(frames),
                                       "DATA.TRAIN_CROP_SIZE", str(size), "DATA.TEST_CROP_SIZE", str(size),
                                       "MODEL.PRETRAINED", "", "MODEL.POS_EMBED_INIT_STD", "1.0",
                                       "MODEL.TIME_EMBED_INIT_STD", "1.0", *(opts or [])])
        self.model = cast(PolicyModel, build_model(cfg))  # the dense IA-RED^2 wrapper of the config
        self.register_buffer("mean", torch.tensor(cfg.DATA.MEAN).view(1, -1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.DATA.STD).view(1, -1, 1, 1, 1))

    @property
    def net(self) -> nn.Module:
        """The TimeSformer backbone."""
        return self.model.backbone

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model((clips - self.mean) / self.std)


def build_probe(name: str, num_classes: int, size: int, frames: int, opts: list[str] | None = None) -> nn.Module:
    """``cnn``: :func:`small_3d_cnn`; ``tsf``: :class:`TinyTimeSformer` (``opts``: its config overrides)."""
    if name == "cnn":
        if opts:
            raise ValueError("config options (KEY VALUE pairs) apply to --model tsf only")
        return small_3d_cnn(num_classes)
    return TinyTimeSformer(num_classes, size, frames, opts)


@torch.no_grad()
def accuracy(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    hits = sum((model(clips[i:i + batch]).argmax(1) == labels[i:i + batch]).sum().item()
               for i in range(0, len(labels), batch))
    return hits / len(labels)


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, clips: torch.Tensor, labels: torch.Tensor,
                batch: int) -> float:
    """One epoch of cross-entropy; returns the mean loss."""
    model.train()
    order, total = torch.randperm(len(labels)), 0.0
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        loss = nn.functional.cross_entropy(model(clips[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(order)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv``), decode the set, train the probe, print and save the curve."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic", help="synthetic set (with meta.json)")
    parser.add_argument("--generate", default="", help="generate the default set into this folder first")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["cnn", "tsf"], default="cnn",
                        help="cnn: the four-block 3D CNN; tsf: the main job's tiny TimeSformer (size %% 16 == 0)")
    parser.add_argument("--out", default="", help="JSON with the accuracy curve")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE pairs of the tiny TimeSformer's config (--model tsf), e.g. MODEL.STEM_CHANNELS "
                             "'[16, 48]'")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    root = args.generate or args.data
    if args.generate:
        generate_video_dataset(root, seed=args.seed, progress=True)
    data = load_split_tensors(root, args.frames, args.size)
    num_classes = int(max(int(y.max()) for _, y in data.values())) + 1
    model = build_probe(args.model, num_classes, args.size, args.frames, args.opts)
    opt = torch.optim.Adam(model.parameters(), args.lr)
    curve, tic = [], time.time()
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, opt, *data["train"], args.batch)
        if epoch % 5 == 0 or epoch == args.epochs:
            row = {"epoch": epoch, "loss": round(loss, 4), "seconds": round(time.time() - tic, 1),
                   **{f"{s}_acc": round(accuracy(model, *data[s]), 4) for s in data}}
            curve.append(row)
            print(json.dumps(row), flush=True)
    print(f"chance accuracy: {1 / num_classes:.3f}")
    if args.out:
        save_json({"args": vars(args), "num_classes": num_classes, "curve": curve}, args.out)
    return 0

