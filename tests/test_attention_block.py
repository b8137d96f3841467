"""Raw-attention baseline at the paper's Block_1: kept set, heatmap block sweep, FLOPs, config key."""

from __future__ import annotations

import importlib

import pytest
import torch
from timm_reference import timm_class_attention
from torch import Tensor, nn

from iared_video.config import ConfigError
from iared_video.interpret.baselines import raw_attention
from iared_video.methods import build_model, load_config, model_gmacs_per_sample
from iared_video.methods.fixed_ratio import AttentionPolicy, temporal_difference
from iared_video.models import PolicyModel, TimeSformer, TimmViT
from iared_video.models.flops import fvcore_gflops

DROP_RATIO = 0.25
NUM_PATCHES = 16  # 64x64 image / 16x16 patches; video: 2 frames of 32x32 / 8x8 patches
KEPT = 12  # by hand: 16 - floor(0.25 * 16 + 0.5) = 16 - 4


def _image_tokens(backbone: TimmViT, x: Tensor) -> Tensor:
    """timm's own embedding path (patch_embed, _pos_embed, norm_pre) of the wrapped VisionTransformer."""
    net = backbone._net
    return net.norm_pre(net._pos_embed(net.patch_embed(x)))


def _reference_keep(blocks: nn.ModuleList, tokens: Tensor, num_prefix: int, block: int) -> Tensor:
    """``(B, N)`` bool: the top-``KEPT`` patches of timm's Block_``block`` class attention."""
    with torch.no_grad():
        for earlier in blocks[:block]:
            tokens = earlier(tokens)
        scores = timm_class_attention(blocks[block], tokens)[:, num_prefix:]
    top = scores.topk(KEPT, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top, True)


def _image_case() -> tuple[PolicyModel, Tensor, Tensor]:
    torch.manual_seed(0)
    backbone = TimmViT("test_vit", num_classes=5, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    return backbone, x, _image_tokens(backbone, x)


def _video_case() -> tuple[PolicyModel, Tensor, Tensor]:
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=5, img_size=32, num_frames=2, patch_size=16, embed_dim=32, depth=3,
                           num_heads=2, pos_embed_std=1.0).eval()
    x = torch.randn(2, 3, 2, 64, 32)  # 2 frames x (4 x 2) patches = 16
    emb = backbone.embed(x)
    return backbone, x, torch.cat([emb.prefix, emb.patches], dim=1)


@pytest.mark.parametrize("case", [_image_case, _video_case])
@pytest.mark.parametrize("block", [1, 0, 2])
def test_attention_policy_keeps_top_k_of_timm_block_class_attention(case, block: int) -> None:
    backbone, x, tokens = case()
    model = PolicyModel(backbone, AttentionPolicy(DROP_RATIO, block=block), num_groups=1).eval()
    with torch.no_grad():
        out = model(x, return_policy=True)
    assert out.keep[0].shape == (2, NUM_PATCHES) and out.keep[0].sum(1).tolist() == [KEPT, KEPT]
    want = _reference_keep(backbone.blocks, tokens, backbone.num_prefix_tokens, block)
    assert torch.equal(out.keep[0], want)
    if block:  # the blocks choose different sets here, so the test tells them apart
        assert not torch.equal(want, _reference_keep(backbone.blocks, tokens, backbone.num_prefix_tokens, 0))


def test_default_attention_block_is_the_papers_block_1() -> None:
    assert AttentionPolicy(DROP_RATIO).block == 1
    cfg = load_config(None, ["METHOD.NAME", "drop_attention", "MODEL.DEPTH", "2", "MODEL.EMBED_DIM", "32",
                             "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32",
                             "DATA.TEST_CROP_SIZE", "32"])
    assert cfg.DROP.ATTENTION_BLOCK == 1 and build_model(cfg).policy.block == 1
    other = load_config(None, ["METHOD.NAME", "drop_attention", "DROP.ATTENTION_BLOCK", "0"])
    assert build_model(other).policy.block == 0
    with pytest.raises(ConfigError, match="DROP.ATTENTION_BLOCK=12 must index a block"):
        load_config(None, ["DROP.ATTENTION_BLOCK", "12"])


@pytest.mark.parametrize("block", [0, 1])
def test_attention_policy_gmacs_match_fvcore(block: int) -> None:
    """Block_1 runs Block_0 on every token first: the analytic count must include it."""
    backbone, x, _ = _video_case()
    model = PolicyModel(backbone, AttentionPolicy(DROP_RATIO, block=block), num_groups=1).eval()
    with torch.no_grad():
        out = model(x[:1], return_policy=True)
    measured = fvcore_gflops(model, x[:1])
    assert model_gmacs_per_sample(model, out).item() == pytest.approx(measured, rel=2e-3)


def test_raw_attention_heatmap_reads_the_chosen_block() -> None:
    backbone, x, tokens = _image_case()
    prefix = backbone.num_prefix_tokens
    with torch.no_grad():
        after_0 = backbone.blocks[0](tokens)
        want_1 = timm_class_attention(backbone.blocks[1], after_0)[:, prefix:]
        want_0 = timm_class_attention(backbone.blocks[0], tokens)[:, prefix:]
    torch.testing.assert_close(raw_attention(backbone, x), want_1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(raw_attention(backbone, x, block=0), want_0, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="does not exist"):
        raw_attention(backbone, x, block=len(backbone.blocks))


def _eval_heatmaps():
    return importlib.import_module("iared_video.experiments.heatmaps")


def test_eval_heatmaps_block_sweep_methods() -> None:
    tool = _eval_heatmaps()
    methods, unknown = tool.method_list(["iared_g2", "raw_attention"], [0, 1, 2], num_groups=3, depth=6)
    assert methods == ["iared_g2", "raw_attention", "raw_attention_b0", "raw_attention_b1", "raw_attention_b2"]
    assert unknown == []
    _, unknown = tool.method_list(["raw_attention_b6", "raw_attention_bx"], [], num_groups=3, depth=6)
    assert unknown == ["raw_attention_b6", "raw_attention_bx"]
    backbone, x, _ = _image_case()
    model = PolicyModel(backbone, AttentionPolicy(DROP_RATIO), num_groups=1).eval()
    target = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(tool.method_scores(model, "raw_attention_b2", x, target),
                               raw_attention(backbone, x, block=2))
    torch.testing.assert_close(tool.method_scores(model, "raw_attention", x, target, attention_block=0),
                               raw_attention(backbone, x, block=0))


def test_reducer_maps_are_the_temporal_difference_by_hand_and_evits_class_attention() -> None:
    """``temporal_diff``: a two-frame embedding whose second frame differs from the first at one patch scores zero
    at every other patch of frame 2, and frame 1 scores its tokens' norms (distance to zeros), all over the row's
    maximum. ``evit_attention``: the raw class attention of EViT's first default block (a quarter of the depth)."""
    from iared_video.models.backbones import Embedded

    tool = _eval_heatmaps()
    first = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])  # 4 patches, C = 2
    second = first.clone()
    second[2] = torch.tensor([1.0, 6.0])  # patch 2 moves: distance 6
    raw = torch.cat([first, second])[None]  # (1, 8, 2), frame-major
    emb = Embedded(raw[:, :0], raw, raw, (2, 2, 2))
    want = torch.tensor([[5.0, 1.0, 1.0, 2.0, 0.0, 0.0, 6.0, 0.0]]) / 6.0
    torch.testing.assert_close(temporal_difference(emb, 1), want)
    video = TimeSformer(num_classes=3, img_size=32, num_frames=2, patch_size=16, embed_dim=8, depth=2, num_heads=2)
    clip = torch.randn(1, 3, 2, 32, 32)
    target = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(tool.method_scores(PolicyModel(video, AttentionPolicy(DROP_RATIO), num_groups=1),
                                                  "temporal_diff", clip, target),
                               temporal_difference(video.embed(clip), 1))
    backbone, x, _ = _image_case()
    model = PolicyModel(backbone, AttentionPolicy(DROP_RATIO), num_groups=1).eval()
    target = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(tool.method_scores(model, "evit_attention", x, target),
                               raw_attention(backbone, x, block=len(backbone.blocks) // 4))
    assert "temporal_diff" not in tool.method_list(None, [], 1, 6, video=False)[0]
    assert tool.method_list(["temporal_diff"], [], 1, 6, video=False)[1] == ["temporal_diff"]
