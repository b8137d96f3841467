"""Divided space-time TimeSformer: official equations, kept-token sequences, batch independence, loading, FLOPs."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from iared_video.config import ConfigError, get_cfg
from iared_video.methods import build_model, load_config, model_gmacs_per_sample
from iared_video.models import DropPolicy, NoDropPolicy, PolicyModel, TimeSformer
from iared_video.models.divided import DividedBlock
from iared_video.models.flops import dense_gmacs, fvcore_gflops
from iared_video.models.policies import GroupInput
from iared_video.models.weights import CheckpointMismatchError, load_pretrained

DIM, DEPTH, HEADS, FRAMES, SIZE, PATCH, CLASSES = 48, 2, 3, 4, 32, 8, 5
AREA = (SIZE // PATCH) ** 2  # 16 positions per frame
N = FRAMES * AREA  # 64 patch tokens
EPS = 1e-6


def tiny(attention_type: str = "divided_space_time", **kwargs) -> TimeSformer:
    return TimeSformer(num_classes=CLASSES, img_size=SIZE, num_frames=FRAMES, patch_size=PATCH, embed_dim=DIM,
                       depth=DEPTH, num_heads=HEADS, attention_type=attention_type, **kwargs)


def random_state(model: torch.nn.Module, seed: int = 0) -> dict[str, Tensor]:
    """Random values for every tensor (LayerNorm weights around 1): temporal_fc is not zero anywhere."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        noise = torch.randn(value.shape, generator=gen)
        out[key] = 1 + 0.1 * noise if "norm" in key and key.endswith("weight") else 0.2 * noise
    return out


def official_file(tmp_path, state: dict[str, Tensor], name: str = "divst.pyth") -> str:
    """An official TimeSformer / PySlowFast .pyth: ``model_state`` with keys under ``model.``."""
    path = tmp_path / name
    torch.save({"model_state": {f"model.{k}": v for k, v in state.items()}, "epoch": 15, "optimizer_state": {}}, path)
    return str(path)


# ---------------------------------------------------------------------------
# References written from the official vit.py equations (float64, raw official tensors).
# ---------------------------------------------------------------------------
def _attn(g: dict[str, Tensor], name: str, z: Tensor) -> Tensor:
    """Official ``Attention`` on ``(batch, L, C)``: qkv, softmax(q k^T * d^-0.5) v, proj."""
    batch, length, dim = z.shape
    qkv = F.linear(z, g[f"{name}.qkv.weight"], g[f"{name}.qkv.bias"])
    q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=HEADS)
    probs = (q @ k.transpose(-2, -1) * (dim // HEADS) ** -0.5).softmax(-1)
    return F.linear(rearrange(probs @ v, "b h n d -> b n (h d)"), g[f"{name}.proj.weight"], g[f"{name}.proj.bias"])


def _norm(g: dict[str, Tensor], name: str, z: Tensor) -> Tensor:
    return F.layer_norm(z, z.shape[-1:], g[f"{name}.weight"], g[f"{name}.bias"], EPS)


def _mlp(g: dict[str, Tensor], p: str, z: Tensor) -> Tensor:
    hidden = F.gelu(F.linear(_norm(g, f"{p}.norm2", z), g[f"{p}.mlp.fc1.weight"], g[f"{p}.mlp.fc1.bias"]))
    return F.linear(hidden, g[f"{p}.mlp.fc2.weight"], g[f"{p}.mlp.fc2.bias"])


def _official_embed(g: dict[str, Tensor], x: Tensor) -> Tensor:
    """vit.py ``forward_features`` up to the blocks: ``(B, 1 + (n t), C)``, space-major, frames inner."""
    batch, frames = x.shape[0], x.shape[2]
    z = F.conv2d(rearrange(x, "b c t h w -> (b t) c h w"), g["patch_embed.proj.weight"], g["patch_embed.proj.bias"],
                 stride=PATCH).flatten(2).transpose(1, 2)
    z = torch.cat([g["cls_token"].expand(z.shape[0], -1, -1), z], dim=1) + g["pos_embed"]
    cls = z[:batch, :1]
    z = rearrange(z[:, 1:], "(b t) n m -> (b n) t m", b=batch, t=frames) + g["time_embed"]
    return torch.cat([cls, rearrange(z, "(b n) t m -> b (n t) m", b=batch, t=frames)], dim=1)


def official_divst(state: dict[str, Tensor], x: Tensor) -> Tensor:
    """The official ``divided_space_time`` forward, rearranges as in vit.py ``Block.forward``."""
    g = {k.removeprefix("model."): v.double() for k, v in state.items()}
    x = x.double()
    batch, frames, w = x.shape[0], x.shape[2], x.shape[-1] // PATCH
    z = _official_embed(g, x)
    h = (z.shape[1] - 1) // frames // w
    for i in range(DEPTH):
        p = f"blocks.{i}"
        xt = rearrange(z[:, 1:], "b (h w t) m -> (b h w) t m", b=batch, h=h, w=w, t=frames)
        res = rearrange(_attn(g, f"{p}.temporal_attn", _norm(g, f"{p}.temporal_norm1", xt)),
                        "(b h w) t m -> b (h w t) m", b=batch, h=h, w=w, t=frames)
        xt = z[:, 1:] + F.linear(res, g[f"{p}.temporal_fc.weight"], g[f"{p}.temporal_fc.bias"])
        init_cls = z[:, :1]
        cls = rearrange(init_cls.repeat(1, frames, 1), "b t m -> (b t) m").unsqueeze(1)
        xs = torch.cat([cls, rearrange(xt, "b (h w t) m -> (b t) (h w) m", b=batch, h=h, w=w, t=frames)], 1)
        res = _attn(g, f"{p}.attn", _norm(g, f"{p}.norm1", xs))
        cls_res = rearrange(res[:, 0], "(b t) m -> b t m", b=batch, t=frames).mean(1, keepdim=True)
        res = rearrange(res[:, 1:], "(b t) (h w) m -> b (h w t) m", b=batch, h=h, w=w, t=frames)
        z = torch.cat([init_cls, xt], 1) + torch.cat([cls_res, res], 1)
        z = z + _mlp(g, p, z)
    return F.linear(_norm(g, "norm", z[:, 0]), g["head.weight"], g["head.bias"])


def _kept_block(g: dict[str, Tensor], p: str, cls: Tensor, patches: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """One official block on one sample where only ``keep`` ``(hw, T)`` patches exist; ``patches`` ``(hw, T, C)``."""
    area, frames, _ = patches.shape
    xt = patches.clone()
    for s in range(area):  # temporal: the kept frames of position s
        kept = keep[s]
        if kept.any():
            y = _attn(g, f"{p}.temporal_attn", _norm(g, f"{p}.temporal_norm1", patches[s, kept][None]))[0]
            xt[s, kept] = patches[s, kept] + F.linear(y, g[f"{p}.temporal_fc.weight"], g[f"{p}.temporal_fc.bias"])
    out, cls_res = xt.clone(), []
    for t in range(frames):  # spatial: frame t's copy of the class token and its kept patches
        kept = keep[:, t]
        y = _attn(g, f"{p}.attn", _norm(g, f"{p}.norm1", torch.cat([cls, xt[kept, t]])[None]))[0]
        cls_res.append(y[0])
        out[kept, t] = xt[kept, t] + y[1:]
    cls = cls + torch.stack(cls_res).mean(0, keepdim=True)
    return cls + _mlp(g, p, cls), out + _mlp(g, p, out)


def kept_divst(state: dict[str, Tensor], x: Tensor, keep: Tensor) -> Tensor:
    """The official equations per sample on the kept tokens only; ``keep`` ``(B, N)`` in the project's
    frame-major patch order ``n = t * hw + s``."""
    g = {k.removeprefix("model."): v.double() for k, v in state.items()}
    logits = []
    for b in range(x.shape[0]):
        z = _official_embed(g, x[b:b + 1].double())[0]
        cls, patches = z[:1], rearrange(z[1:], "(n t) m -> n t m", t=FRAMES)
        mask = rearrange(keep[b], "(t n) -> n t", t=FRAMES)
        for i in range(DEPTH):
            cls, patches = _kept_block(g, f"blocks.{i}", cls, patches, mask)
        logits.append(F.linear(_norm(g, "norm", cls[0]), g["head.weight"], g["head.bias"]))
    return torch.stack(logits)


# ---------------------------------------------------------------------------
# A fixed keep mask as a drop policy (input level, D = 1).
# ---------------------------------------------------------------------------
class FixedKeep(DropPolicy):
    """Keeps ``mask`` ``(B, N)`` at group 0 (set ``mask`` to the rows of the batch being run)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.mask = mask

    def acts_on(self, group: int) -> bool:
        return group == 0

    def score(self, inp: GroupInput) -> Tensor:
        return inp.tokens.new_ones(inp.tokens.shape[0])

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        return self.mask.flatten()


def keep_masks() -> Tensor:
    """Three samples with different counts: random half; frame 2 and position 5 gone; three tokens."""
    gen = torch.Generator().manual_seed(7)
    masks = torch.rand(3, FRAMES, AREA, generator=gen) < 0.5
    masks[1] = torch.rand(FRAMES, AREA, generator=gen) < 0.7
    masks[1, 2], masks[1, :, 5] = False, False
    masks[2] = False
    masks[2, 0, 3] = masks[2, 0, 9] = masks[2, 3, 3] = True
    return masks.flatten(1)


# ---------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------
def test_official_divst_checkpoint_gives_official_logits(tmp_path, caplog) -> None:
    state = random_state(tiny())
    assert state["blocks.1.temporal_fc.weight"].abs().min() > 0
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.EMBED_DIM", DIM, "MODEL.DEPTH", DEPTH, "MODEL.NUM_HEADS", HEADS, "MODEL.PATCH_SIZE",
                         PATCH, "MODEL.NUM_CLASSES", CLASSES, "DATA.TRAIN_CROP_SIZE", SIZE, "DATA.NUM_FRAMES", FRAMES,
                         "MODEL.ATTENTION_TYPE", "divided_space_time", "METHOD.NAME", "dense",
                         "MODEL.PRETRAINED", official_file(tmp_path, state)])
    with caplog.at_level(logging.INFO, logger="iared_video.models.weights"):
        model = build_model(cfg).eval()
    assert "format timesformer" in caplog.text and "WARNING" not in caplog.text
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        logits = model(x)
    expected = official_divst(state, x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(kept_divst(state, x, torch.ones(2, N, dtype=torch.bool)), expected)
    backbone = model.backbone  # the blocks' dense forward (B, 1 + N, C) runs the same equations
    with torch.no_grad():
        emb = backbone.embed(x)
        tokens = torch.cat([emb.prefix, emb.patches], dim=1)
        for block in backbone.blocks:
            tokens = block(tokens, emb.grid)
        torch.testing.assert_close(backbone.forward_head(tokens[:, :1]), logits, atol=1e-5, rtol=0)


def test_dropped_tokens_match_official_equations_on_kept_sequences_and_batch_independence() -> None:
    backbone = tiny().eval()
    state = random_state(backbone, seed=1)
    backbone.load_state_dict(state)
    masks = keep_masks()
    policy = FixedKeep(masks)
    model = PolicyModel(backbone, policy, num_groups=1).eval()
    x = torch.randn(3, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        out = model(x, return_policy=True)
        singles = []
        for i in range(3):
            policy.mask = masks[i:i + 1]
            singles.append(model(x[i:i + 1]))
    assert torch.equal(out.keep[0], masks)
    assert len(set(masks.sum(1).tolist())) == 3
    torch.testing.assert_close(out.logits, torch.cat(singles), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits.double(), kept_divst(state, x, masks), atol=1e-4, rtol=0)


def test_temporal_fc_starts_at_zero_after_the_first_block() -> None:
    backbone = tiny()
    assert backbone.blocks[0].temporal_fc.weight.abs().sum() > 0
    for block in backbone.blocks[1:]:
        assert isinstance(block, DividedBlock)
        assert not block.temporal_fc.weight.any() and not block.temporal_fc.bias.any()


def test_training_with_drop_path_and_dropped_tokens_backpropagates() -> None:
    torch.manual_seed(0)
    model = PolicyModel(tiny(drop_path_rate=0.5), FixedKeep(keep_masks()[:2]), num_groups=1).train()
    logits = model(torch.randn(2, 3, FRAMES, SIZE, SIZE))
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    block = model.backbone.blocks[0]
    assert block.temporal_attn.qkv.weight.grad is not None and block.attn.qkv.weight.grad is not None


@pytest.mark.parametrize("held,model_type,message", [
    ("joint_space_time", "divided_space_time", "joint_space_time TimeSformer (its blocks have no temporal_attn"),
    ("divided_space_time", "joint_space_time", "divided_space_time TimeSformer (its blocks have temporal_attn"),
])
def test_attention_type_mismatch_is_refused(tmp_path, held, model_type, message) -> None:
    path = official_file(tmp_path, tiny(held).state_dict(), f"{held}.pyth")
    model = PolicyModel(tiny(model_type), NoDropPolicy(), 1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_pretrained(model, path)
    text = str(info.value)
    assert message in text and f"MODEL.ATTENTION_TYPE {held}" in text and path in text


def test_image_vit_initialises_temporal_attention_from_spatial(tmp_path) -> None:
    image = {k: v for k, v in random_state(tiny("joint_space_time")).items() if k != "time_embed"}
    path = tmp_path / "vit.pth"
    torch.save(image, path)
    model = PolicyModel(tiny(), NoDropPolicy(), 1)
    report = load_pretrained(model, path)
    block = model.backbone.blocks[1]
    torch.testing.assert_close(block.temporal_attn.qkv.weight.detach(), image["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(block.temporal_norm1.bias.detach(), image["blocks.1.norm1.bias"])
    assert not block.temporal_fc.weight.any()
    note = report.notes["backbone.blocks.0.temporal_attn.proj.weight"]
    assert "copied from backbone.blocks.0.attn.proj.weight" in note
    assert sorted(report.missing) == sorted(["backbone.time_embed"] + [
        f"backbone.blocks.{i}.temporal_fc.{p}" for i in range(DEPTH) for p in ("weight", "bias")])


def hand_divided_block(kept: Tensor, per_position: Tensor, per_frame: Tensor) -> Tensor:
    """One divST block of the tiny model by hand (C = 48, MLP 4C, T = 4 class-token copies)."""
    c, t = DIM, FRAMES
    temporal = 5 * kept * c + 3 * kept * c * c + 2 * c * (per_position ** 2).sum(-1) + kept * c * c + kept * c * c
    s = kept + t
    spatial = 5 * s * c + 3 * s * c * c + 2 * c * ((per_frame + 1) ** 2).sum(-1) + s * c * c
    mlp = 5 * (kept + 1) * c + (kept + 1) * 8 * c * c
    return temporal + spatial + mlp


def hand_total(keep: Tensor) -> Tensor:
    grid = keep.double().view(-1, FRAMES, AREA)
    block = hand_divided_block(grid.sum((1, 2)), grid.sum(1), grid.sum(2))
    return (N * DIM * 3 * PATCH ** 2 + DEPTH * block + 5 * DIM + DIM * CLASSES) / 1e9


def test_flops_per_sample_at_keep_one_and_with_drops_equal_hand_count() -> None:
    dense = PolicyModel(tiny(), NoDropPolicy(), 1).eval()
    # keep 1 written out: 16 temporal sequences of 4 tokens, 4 spatial sequences of 17, MLP on 65 tokens
    c, n = DIM, N
    block = (5 * n * c + 5 * n * c * c + 16 * 4 ** 2 * 2 * c + 5 * 68 * c + 4 * 68 * c * c + 4 * 17 ** 2 * 2 * c
             + 5 * 65 * c + 65 * 8 * c * c)
    expected = (n * c * 3 * PATCH ** 2 + DEPTH * block + 5 * c + c * CLASSES) / 1e9
    assert dense_gmacs(dense, N) == pytest.approx(expected, rel=1e-12)
    assert float(hand_total(torch.ones(1, N))[0]) == pytest.approx(expected, rel=1e-12)
    assert fvcore_gflops(dense, torch.randn(1, 3, FRAMES, SIZE, SIZE)) == pytest.approx(expected, rel=1e-3)

    masks = keep_masks()
    model = PolicyModel(dense.backbone, FixedKeep(masks), 1).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, FRAMES, SIZE, SIZE), return_policy=True)
    torch.testing.assert_close(model_gmacs_per_sample(model, out), hand_total(masks), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="keep masks"):
        model_gmacs_per_sample(model, masks.sum(1, keepdim=True), num_patches=N)


def test_config_choices_and_refused_combinations() -> None:
    base = ["MODEL.ATTENTION_TYPE", "divided_space_time"]
    assert load_config(None, base).MODEL.ATTENTION_TYPE == "divided_space_time"
    with pytest.raises(ConfigError, match="joint space-time attention only"):
        load_config(None, base + ["METHOD.NAME", "drop_attention"])
    with pytest.raises(ConfigError, match="needs MODEL.MODEL_NAME timesformer"):
        load_config(None, base + ["MODEL.MODEL_NAME", "deit"])
    with pytest.raises(ConfigError, match="MODEL.ATTENTION_TYPE must be one of"):
        load_config(None, ["MODEL.ATTENTION_TYPE", "space_only"])


def test_benchmark_runs_divst_with_controlled_keep() -> None:
    from iared_video.engine.benchmark import BenchSettings, run_benchmark
    from iared_video.experiments.benchmark import PRESETS

    assert load_config(None, PRESETS["tsf_divst"]).MODEL.ATTENTION_TYPE == "divided_space_time"
    cfg = load_config(None, PRESETS["tsf_divst"] + [
        "MODEL.EMBED_DIM", str(DIM), "MODEL.DEPTH", str(DEPTH), "MODEL.NUM_HEADS", str(HEADS),
        "MODEL.PATCH_SIZE", str(PATCH), "DATA.NUM_FRAMES", str(FRAMES), "DATA.TRAIN_CROP_SIZE", str(SIZE),
        "DATA.TEST_CROP_SIZE", str(SIZE), "MODEL.NUM_CLASSES", str(CLASSES), "IARED.INTERPRETER_DIM", "8"])
    settings = BenchSettings(batch_sizes=[2], warmup=0, iters=1, keep_ratios=[0.5], measure_memory=False)
    rows = {r["variant"]: r for r in run_benchmark(cfg, settings, "cpu").rows}
    controlled = rows["iared@keep=0.5±0.1"]
    # by hand: the two keep ratios sit at the centres of the halves of [0.4, 0.6] (0.45 and 0.55, in either
    # order), each sample keeps round(r N) patch tokens at the single group
    ratios = torch.tensor([0.45, 0.55], dtype=torch.float64)
    assert controlled["keep_ratio"] == pytest.approx(float((ratios * N).round().mean()) / N)
    dense = float(hand_total(torch.ones(1, N))[0])
    assert rows["dense"]["gmacs_per_sample"] == pytest.approx(dense, rel=1e-12)
    assert controlled["ideal_speedup"] == pytest.approx(dense / controlled["gmacs_per_sample"], rel=1e-12)
