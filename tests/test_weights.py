"""Loading local checkpoints: official TimeSformer .pyth, DeiT/timm .pth, our own, shape adaptation, errors."""

from __future__ import annotations

import argparse
import datetime
import logging
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from iared_video.config import get_cfg
from iared_video.methods import build_model
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models import NoDropPolicy, PolicyModel, TimeSformer, TimmViT
from iared_video.models.weights import (
    CheckpointFileError,
    CheckpointMismatchError,
    extract_state_dict,
    load_checkpoint_file,
    load_pretrained,
)

DIM, HEADS, PATCH = 64, 4, 8


def tiny_timesformer(num_classes: int = 5, img_size: int = 32, frames: int = 4, depth: int = 2,
                     dim: int = DIM, patch: int = PATCH) -> TimeSformer:
    return TimeSformer(num_classes=num_classes, img_size=img_size, num_frames=frames, patch_size=patch,
                       embed_dim=dim, depth=depth, num_heads=HEADS)


def randomise(state: dict[str, Tensor], seed: int = 0) -> dict[str, Tensor]:
    """Random values for every tensor (LayerNorm weights around 1), so no parameter is trivially 0 or 1."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        noise = torch.randn(value.shape, generator=gen)
        out[key] = 1 + 0.1 * noise if "norm" in key and key.endswith("weight") else 0.1 * noise
    return out


def official_checkpoint(backbone_state: dict[str, Tensor]) -> dict:
    """The layout of an official TimeSformer / PySlowFast .pyth checkpoint."""
    return {"model_state": {f"model.{k}": v for k, v in backbone_state.items()}, "epoch": 15,
            "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: vit\n"}


def reference_timesformer(sd: dict[str, Tensor], x: Tensor, heads: int, eps: float = 1e-6) -> Tensor:
    """Dense JointST TimeSformer written from the raw official tensors (float64)."""
    g = {k.removeprefix("model."): v.double() for k, v in sd.items()}
    x = x.double()
    batch, _, frames = x.shape[:3]
    weight = g["patch_embed.proj.weight"]
    pos, time = g["pos_embed"], g["time_embed"]
    per_frame = [F.conv2d(x[:, :, t], weight, g["patch_embed.proj.bias"], stride=weight.shape[-1])
                 .flatten(2).transpose(1, 2) + pos[:, 1:] + time[:, t:t + 1] for t in range(frames)]
    cls = (g["cls_token"] + pos[:, :1]).expand(batch, -1, -1)
    z = torch.cat([cls] + per_frame, dim=1)
    length, dim = z.shape[1:]
    head_dim = dim // heads
    depth = len({k.split(".")[1] for k in g if k.startswith("blocks.")})
    for i in range(depth):
        b = lambda name, i=i: g[f"blocks.{i}.{name}"]  # noqa: E731
        h = F.layer_norm(z, (dim,), b("norm1.weight"), b("norm1.bias"), eps)
        q, k, v = F.linear(h, b("attn.qkv.weight"), b("attn.qkv.bias")).view(
            batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(head_dim)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, length, dim)
        z = z + F.linear(out, b("attn.proj.weight"), b("attn.proj.bias"))
        h = F.layer_norm(z, (dim,), b("norm2.weight"), b("norm2.bias"), eps)
        z = z + F.linear(F.gelu(F.linear(h, b("mlp.fc1.weight"), b("mlp.fc1.bias"))), b("mlp.fc2.weight"),
                         b("mlp.fc2.bias"))
    cls_out = F.layer_norm(z[:, 0], (dim,), g["norm.weight"], g["norm.bias"], eps)
    return F.linear(cls_out, g["head.weight"], g["head.bias"])


# ---------------------------------------------------------------------------
# (a) official TimeSformer .pyth through build_model(cfg) with MODEL.PRETRAINED.
# ---------------------------------------------------------------------------
def test_official_timesformer_checkpoint_matches_reference_forward(tmp_path, caplog):
    torch.manual_seed(0)
    state = randomise(tiny_timesformer().state_dict())
    ckpt = official_checkpoint(state)
    path = tmp_path / "timesformer_official.pyth"
    torch.save(ckpt, path)

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.EMBED_DIM", DIM, "MODEL.DEPTH", 2, "MODEL.NUM_HEADS", HEADS, "MODEL.PATCH_SIZE",
                         PATCH, "MODEL.NUM_CLASSES", 5, "DATA.TRAIN_CROP_SIZE", 32, "DATA.NUM_FRAMES", 4,
                         "METHOD.NAME", "dense", "MODEL.PRETRAINED", str(path)])
    with caplog.at_level(logging.INFO, logger="iared_video.models.weights"):
        model = build_model(cfg).eval()
    assert "format timesformer" in caplog.text

    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        logits = model(x)
    expected = reference_timesformer(ckpt["model_state"], x, HEADS)
    assert expected.abs().max() > 0.1  # non-trivial logits
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=0)


def test_official_checkpoint_report_and_policy_keys_missing(tmp_path):
    state = randomise(tiny_timesformer().state_dict())
    path = tmp_path / "ts.pyth"
    torch.save(official_checkpoint(state), path)
    model = PolicyModel(tiny_timesformer(), InterpreterPolicy(DIM, num_groups=2, head_dim=16), num_groups=2)
    report = load_pretrained(model, path)
    assert report.format == "timesformer"
    assert sorted(report.loaded) == sorted(f"backbone.{k}" for k in state)
    assert report.missing and all(k.startswith("policy.interpreters.") for k in report.missing)
    assert not (report.unexpected or report.reshaped or report.skipped_shape)
    torch.testing.assert_close(model.backbone.time_embed.detach(), state["time_embed"])


# ---------------------------------------------------------------------------
# (b) DeiT .pth ("model" key, with argparse args) and bare timm state dicts.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deit_tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    net = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    net.load_state_dict(randomise(net.state_dict(), seed=1))
    return net


@pytest.mark.parametrize("container", ["deit", "timm"])
def test_deit_and_bare_timm_checkpoints_reproduce_timm_logits(tmp_path, deit_tiny, container):
    state = deit_tiny.state_dict()
    ckpt = {"model": state, "args": argparse.Namespace(model="deit_tiny_patch16_224"), "epoch": 299} \
        if container == "deit" else state
    path = tmp_path / "deit.pth"
    torch.save(ckpt, path)
    model = PolicyModel(TimmViT("deit_tiny_patch16_224", num_classes=1000), NoDropPolicy(), 1).eval()
    report = load_pretrained(model, path)
    assert report.format == container
    assert not (report.missing or report.unexpected or report.reshaped or report.skipped_shape)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), deit_tiny(x), atol=1e-4, rtol=1e-4)


def test_distilled_deit_dropped_into_plain_model_and_kept_in_distilled_model(tmp_path):
    torch.manual_seed(0)
    distilled = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False).eval()
    distilled.load_state_dict(randomise(distilled.state_dict(), seed=2))
    path = tmp_path / "deit_distilled.pth"
    torch.save({"model": distilled.state_dict()}, path)

    plain = PolicyModel(TimmViT("deit_tiny_patch16_224", num_classes=1000), NoDropPolicy(), 1)
    report = load_pretrained(plain, path)
    dropped = {"backbone.dist_token", "backbone.head_dist.weight", "backbone.head_dist.bias"}
    assert dropped <= set(report.unexpected) and dropped <= set(report.notes)
    assert report.reshaped == ["backbone.pos_embed"]
    pos = distilled.pos_embed.detach()
    torch.testing.assert_close(plain.backbone.pos_embed.detach(), torch.cat([pos[:, :1], pos[:, 2:]], dim=1))

    same = PolicyModel(TimmViT("deit_tiny_distilled_patch16_224", num_classes=1000), NoDropPolicy(), 1).eval()
    report = load_pretrained(same, path)
    assert not (report.missing or report.unexpected or report.reshaped)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(same(x), distilled(x), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------
# (c) ImageNet ViT -> TimeSformer initialisation.
# ---------------------------------------------------------------------------
def tiny_vit(img_size: int, num_classes: int = 1000) -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=img_size, patch_size=16, embed_dim=DIM, depth=2, num_heads=HEADS,
                            num_classes=num_classes).eval()
    vit.load_state_dict(randomise(vit.state_dict(), seed=3))
    return vit


def test_vit_init_of_timesformer_equals_vit_on_one_frame(tmp_path):
    vit = tiny_vit(64)
    path = tmp_path / "vit.pth"
    torch.save({"model": vit.state_dict()}, path)
    model = PolicyModel(tiny_timesformer(1000, img_size=64, patch=16), NoDropPolicy(), 1).eval()
    with torch.no_grad():
        model.backbone.time_embed.fill_(1.0)  # must be zeroed by the loader
    report = load_pretrained(model, path)
    assert report.missing == ["backbone.time_embed"] and "zero" in report.notes["backbone.time_embed"]
    assert not (report.reshaped or report.skipped_shape or report.unexpected)
    assert torch.count_nonzero(model.backbone.time_embed) == 0

    image = torch.randn(2, 3, 64, 64)
    clip = image[:, :, None]  # one frame: zero temporal embedding, so TimeSformer == the ViT
    with torch.no_grad():
        torch.testing.assert_close(model(clip), vit(image), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ckpt_size,model_size", [(64, 32), (32, 64)])
def test_vit_init_resamples_pos_embed_zeroes_time_and_skips_head(tmp_path, caplog, ckpt_size, model_size):
    vit = tiny_vit(ckpt_size)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model = PolicyModel(tiny_timesformer(10, img_size=model_size, patch=16), NoDropPolicy(), 1)
    with caplog.at_level(logging.INFO, logger="iared_video.models.weights"):
        report = load_pretrained(model, path)

    assert report.reshaped == ["backbone.pos_embed"]
    assert sorted(report.skipped_shape) == ["backbone.head.bias", "backbone.head.weight"]
    assert report.missing == ["backbone.time_embed"]
    grid = model_size // 16
    expected = resample_abs_pos_embed(vit.pos_embed.detach(), [grid, grid], num_prefix_tokens=1)
    torch.testing.assert_close(model.backbone.pos_embed.detach(), expected)
    torch.testing.assert_close(model.backbone.blocks[1].mlp.fc2.weight.detach(), vit.blocks[1].mlp.fc2.weight)
    assert torch.count_nonzero(model.backbone.time_embed) == 0
    for key in report.reshaped + report.skipped_shape + report.missing:
        assert key in caplog.text


def test_time_embed_interpolated_when_frame_count_differs(tmp_path):
    state = randomise(tiny_timesformer(frames=4).state_dict())
    path = tmp_path / "ts4.pyth"
    torch.save(official_checkpoint(state), path)
    model = PolicyModel(tiny_timesformer(frames=8), NoDropPolicy(), 1)
    report = load_pretrained(model, path)
    assert report.reshaped == ["backbone.time_embed"] and not report.missing
    expected = F.interpolate(state["time_embed"].transpose(1, 2), size=8, mode="linear",
                             align_corners=False).transpose(1, 2)
    torch.testing.assert_close(model.backbone.time_embed.detach(), expected)


# ---------------------------------------------------------------------------
# Our own checkpoints (engine layout), with and without DDP prefixes.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ddp", [False, True])
def test_own_checkpoint_roundtrip(tmp_path, ddp):
    torch.manual_seed(0)
    source = PolicyModel(tiny_timesformer(depth=4), InterpreterPolicy(DIM, 2, head_dim=16), 2)
    state = {("module." if ddp else "") + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "checkpoint_epoch_00003.pyth"
    torch.save({"model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "IARED:\n  NUM_GROUPS: 2\n", "epoch": 3}, path)
    torch.manual_seed(1)
    target = PolicyModel(tiny_timesformer(depth=4), InterpreterPolicy(DIM, 2, head_dim=16), 2)
    report = load_pretrained(target, path)
    assert report.format == ("wrapped+ddp" if ddp else "wrapped")
    assert not (report.missing or report.unexpected or report.reshaped or report.skipped_shape)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_extract_state_dict_formats():
    t = torch.zeros(1)
    assert extract_state_dict({"model_state": {"model.cls_token": t}})[1] == "timesformer"
    assert extract_state_dict({"model": {"cls_token": t}, "epoch": 1})[1] == "deit"
    assert extract_state_dict({"state_dict": {"module.cls_token": t}})[1] == "timm+ddp"
    state, fmt = extract_state_dict({"cls_token": t, "policy.interpreters.0.policy_token": t} | {"x": 1})
    assert fmt == "timm" and "x" not in state
    with pytest.raises(CheckpointFileError, match="no model weights"):
        extract_state_dict({"epoch": 3})


# ---------------------------------------------------------------------------
# (d) checkpoints that do not fit.
# ---------------------------------------------------------------------------
def test_width_mismatch_raises_with_keys_and_shapes(tmp_path):
    path = tmp_path / "narrow.pyth"
    torch.save(official_checkpoint(tiny_timesformer(dim=32).state_dict()), path)
    model = PolicyModel(tiny_timesformer(dim=64), NoDropPolicy(), 1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_pretrained(model, path)
    message = str(info.value)
    assert str(path) in message
    assert "backbone.cls_token: checkpoint (1, 1, 32) vs model (1, 1, 64)" in message
    assert "backbone.patch_embed.proj.weight: checkpoint (32, 3, 8, 8) vs model (64, 3, 8, 8)" in message
    assert "... and" in message and "more" in message  # long lists are cut after 10 keys

    report = load_pretrained(model, path, strict_shapes=False)
    assert "backbone.cls_token" in report.skipped_shape and "backbone.head.bias" in report.loaded


def test_unrelated_checkpoint_raises(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(CheckpointMismatchError, match="shares no tensor"):
        load_pretrained(PolicyModel(tiny_timesformer(), NoDropPolicy(), 1), path)


# ---------------------------------------------------------------------------
# (e) files that are not loadable checkpoints.
# ---------------------------------------------------------------------------
def test_truncated_file_raises_clear_error(tmp_path):
    path = tmp_path / "cut.pyth"
    torch.save(official_checkpoint(tiny_timesformer().state_dict()), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFileError, match="truncated") as info:
        load_checkpoint_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"frame,label\nclip.mp4 3\n", "not a PyTorch")])
def test_empty_or_foreign_file_raises(tmp_path, content, reason):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError, match=reason):
        load_checkpoint_file(path)


def test_missing_file_and_refused_objects(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pyth"):
        load_checkpoint_file(tmp_path / "nowhere.pyth")
    path = tmp_path / "pickled.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "saved_at": datetime.datetime(2021, 1, 1)}, path)
    with pytest.raises(CheckpointFileError, match="datetime.datetime"):
        load_checkpoint_file(path)
