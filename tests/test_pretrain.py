"""Formula pre-training: a short re-run of the recipe, the committed weights' record, and their inflation."""

from __future__ import annotations

import hashlib
import json
import math
import os

import torch
from torch import Tensor

from iared_video.experiments.pretrain import DEFAULT_RECIPE, PretrainRecipe, read_sidecar, run_pretraining
from iared_video.methods import build_model, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(REPO, DEFAULT_RECIPE.weights)
VIDEO_DENSE = os.path.join(REPO, "configs", "Synthetic", "tsf_tiny_dense.yaml")
IMAGE_DENSE = os.path.join(REPO, "configs", "Synthetic", "deit_tiny_dense.yaml")


def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_short_pretraining_exports_the_newest_checkpoints_backbone(tmp_path) -> None:
    """The recipe end to end on 3 formula classes at 32 px for one epoch: data, training, export, sidecar."""
    weights = str(tmp_path / "w.pyth")
    opts = ("SOLVER.MAX_EPOCH", "1", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "DATA.TRAIN_CROP_SIZE", "32",
            "DATA.TEST_CROP_SIZE", "32", "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.EVAL_PERIOD", "1")
    recipe = PretrainRecipe(config=os.path.join(REPO, DEFAULT_RECIPE.config), weights=weights, num_classes=3,
                            per_class=4, val_per_class=2, size=32, seed=1, opts=opts)
    out = str(tmp_path / "run")
    record = run_pretraining(recipe, str(tmp_path / "formula"), out, command="test", init_method="file://" +
                             str(tmp_path / "rendezvous"))
    assert json.loads(json.dumps(record)) == read_sidecar(weights) and record["sha256"] == _file_sha256(weights)
    assert record["recipe"]["num_classes"] == 3 and record["recipe"]["seed"] == 1
    exported = torch.load(weights, weights_only=True)["model_state"]
    ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
    trained = torch.load(os.path.join(out, "checkpoints", ckpts[-1]), weights_only=True)["model_state"]
    assert set(exported) == {k for k in trained if k.startswith("backbone.")}
    for key, value in exported.items():
        assert torch.equal(value, trained[key]), key
    assert record["num_parameters"] == sum(v.numel() for v in exported.values())


def test_committed_weights_match_their_record() -> None:
    """weights/vit_micro_formula.pyth is the file its sidecar describes, made with the code's default recipe."""
    record = read_sidecar(COMMITTED)
    assert record["sha256"] == _file_sha256(COMMITTED)
    recipe = dict(record["recipe"])
    recipe["opts"] = tuple(recipe["opts"])
    assert PretrainRecipe(**recipe) == DEFAULT_RECIPE


def _image_and_video(frames: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The image model and its TimeSformer inflation, both from the committed weights (heads included)."""
    classes = ["MODEL.NUM_CLASSES", str(DEFAULT_RECIPE.num_classes), "MODEL.PRETRAINED", COMMITTED]
    image = build_model(load_config(IMAGE_DENSE, classes)).eval()
    video = build_model(load_config(VIDEO_DENSE, [*classes, "DATA.NUM_FRAMES", str(frames)])).eval()
    assert torch.count_nonzero(video.backbone.time_embed) == 0  # TimeSformer's inflation: time starts at zero
    return image, video


def _tokens_after_blocks(backbone: torch.nn.Module, x: Tensor) -> Tensor:
    """Dense forward through timm's own Block modules: ``(B, 1 + N, C)`` final tokens before the norm."""
    emb = backbone.embed(x)
    tokens = torch.cat([emb.prefix, emb.patches], dim=1)
    for block in backbone.blocks:
        tokens = block(tokens)
    return tokens


def _image_tokens_with_class_key_weight(backbone: torch.nn.Module, x: Tensor, weight: float) -> Tensor:
    """The image model's dense forward, written out by hand, with the class token's key counted ``weight``
    times in every softmax (an additive ``log(weight)`` on its attention logit)."""
    emb = backbone.embed(x)
    tokens = torch.cat([emb.prefix, emb.patches], dim=1)
    for block in backbone.blocks:
        attn = block.attn
        q, k, v = attn.qkv(block.norm1(tokens)).unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * attn.scale
        logits[..., 0] += math.log(weight)
        mixed = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
        tokens = tokens + attn.proj(mixed)
        tokens = tokens + block.mlp(block.norm2(tokens))
    return tokens


@torch.no_grad()
def test_inflated_timesformer_on_one_frame_is_the_image_model() -> None:
    image, video = _image_and_video(frames=1)
    frame = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(video(frame[:, :, None]), image(frame), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_tokens_after_blocks(video.backbone, frame[:, :, None]),
                               _tokens_after_blocks(image.backbone, frame), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_inflated_timesformer_on_identical_frames_gives_per_frame_image_features() -> None:
    """T identical frames, time embedding zero: joint attention sees every patch key T times and the class key
    once, so each frame's tokens equal the image model's with the class key weighted 1/T (worked out in the
    softmax); at T = 1 that is the image model itself (test above)."""
    frames = 4
    image, video = _image_and_video(frames)
    frame = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    clip = frame[:, :, None].expand(-1, -1, frames, -1, -1)
    got = _tokens_after_blocks(video.backbone, clip)
    want = _image_tokens_with_class_key_weight(image.backbone, frame, 1.0 / frames)
    num = want.shape[1] - 1
    per_frame = got[:, 1:].unflatten(1, (frames, num))
    for t in range(frames):
        torch.testing.assert_close(per_frame[:, t], want[:, 1:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[:, 0], want[:, 0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want, _tokens_after_blocks(image.backbone, frame), atol=1e-3)  # the 1/T matters
