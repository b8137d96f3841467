"""EViT worked by hand: the kept set is the top-k of head-averaged class attention, the fused token the
attention-weighted sum of the rest; keep rate 1 is the dense model; counts and FLOPs per location."""

from __future__ import annotations

import math
import os

import pytest
import torch
from timm_reference import timm_class_attention

from iared_video.config import ConfigError
from iared_video.methods import build_model, load_config, model_gmacs_per_sample
from iared_video.methods.base import depth_quarters, resolve_locations
from iared_video.methods.evit import EViTReducer, attentive_count, reorganize
from iared_video.models import NoDropPolicy, PolicyModel, TimeSformer, TimmViT
from iared_video.models.backbones import Embedded
from iared_video.models.flops import dense_gmacs, fvcore_gflops
from iared_video.models.reduction import ReducerState, ReducingViT
from iared_video.models.token_ops import Attended

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = torch.tensor([[[1.0, 0.0], [2.0, 2.0], [0.0, 4.0], [3.0, 1.0], [5.0, 5.0]]])  # 5 non-class tokens
# Class attention of two heads over [class, t0..t4]; head-averaged over the patches: 0.1, 0.4, 0.05, 0.3, 0.15
HEADS = torch.tensor([[[0.0, 0.2, 0.3, 0.0, 0.4, 0.1],
                       [0.0, 0.0, 0.5, 0.1, 0.2, 0.2]]])


def test_reorganize_keeps_the_top_k_and_fuses_the_rest_by_hand() -> None:
    attentiveness = torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]])
    tokens, kept, rest = reorganize(X, attentiveness, keep=3)
    assert kept.tolist() == [[1, 3, 4]] and rest.tolist() == [[0, 2]]  # top-3: 0.4, 0.3, 0.15 (order kept)
    fused = 0.1 * X[0, 0] + 0.05 * X[0, 2]  # sum over the inattentive tokens of a_i x_i = (0.1, 0.2)
    torch.testing.assert_close(tokens[0], torch.stack([X[0, 1], X[0, 3], X[0, 4], fused]))
    dropped, _, _ = reorganize(X, attentiveness, keep=3, fuse=False)
    torch.testing.assert_close(dropped[0], X[0, [1, 3, 4]])
    assert attentive_count(0.5, 5) == 3 and attentive_count(0.7, 196) == 138 == math.ceil(0.7 * 196)


def test_reducer_averages_heads_and_marks_the_fused_token() -> None:
    state = ReducerState(Embedded(torch.zeros(1, 1, 2), X.clone(), X.clone(), (1, 1, 5)))
    scores = EViTReducer(0.5, [0]).reduce(0, state, Attended(class_attention=HEADS))
    torch.testing.assert_close(scores, torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]]))  # mean of the two heads
    assert state.patches.shape == (1, 4, 2) and state.origin.tolist() == [[1, 3, 4, -1]]
    torch.testing.assert_close(state.patches[0, -1], torch.tensor([0.1, 0.2]))
    assert state.size.tolist() == [[1.0, 1.0, 1.0, 2.0]] and state.keep_mask().tolist() == [[0, 1, 0, 1, 1]]


def _tiny_vit() -> TimmViT:
    torch.manual_seed(0)
    return TimmViT("test_vit", num_classes=5, img_size=64).eval()  # 16 patches at 64 px


def test_kept_set_is_the_top_k_of_timms_class_attention_in_that_block() -> None:
    backbone = _tiny_vit()
    model = ReducingViT(backbone, EViTReducer(0.5, [1])).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
        emb = backbone.embed(x)
        entering = backbone.blocks[0](torch.cat([emb.prefix, emb.patches], dim=1))
        attentive = timm_class_attention(backbone.blocks[1], entering)[:, 1:]
    top = attentive.topk(8, dim=1).indices
    want = torch.zeros(2, 16, dtype=torch.bool).scatter_(1, top, True)
    assert torch.equal(out.keep[1], want) and out.keep[0].all()
    torch.testing.assert_close(out.scores[1], attentive, atol=1e-6, rtol=1e-5)
    assert [t.tolist() for t in out.tokens] == [[16, 16], [9, 9]] + [[9, 9]] * 4  # 8 kept + the fused token


def _backbone_and_input(case: str) -> tuple:
    """A tiny image ViT or TimeSformer (seed 0) and a batch of three inputs for it."""
    torch.manual_seed(0)
    backbone = _tiny_vit() if case == "image" else TimeSformer(num_classes=5, img_size=32, num_frames=2, patch_size=8,
                                                                embed_dim=32, depth=4, num_heads=2).eval()
    x = torch.randn(3, 3, 64, 64) if case == "image" else torch.randn(3, 3, 2, 32, 32)
    return backbone, x


@pytest.mark.parametrize("case", ["image", "video"])
def test_keep_rate_one_is_the_dense_model_bitwise(case: str) -> None:
    backbone, x = _backbone_and_input(case)
    model = ReducingViT(backbone, EViTReducer(1.0, [0, 1, 2])).eval()
    with torch.no_grad():
        assert torch.equal(model(x), PolicyModel(backbone, NoDropPolicy(), 1).eval()(x))


def test_counts_per_location_and_gmacs_match_fvcore() -> None:
    """16 patches, kappa 0.7 at blocks 1, 3, 4: ceil(11.2) + 1 = 13, ceil(9.1) + 1 = 11, ceil(7.7) + 1 = 9."""
    model = ReducingViT(_tiny_vit(), EViTReducer(0.7, [1, 3, 4])).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
    assert [int(t) for t in out.tokens] == [16, 13, 13, 11, 9, 9]
    gmacs = model_gmacs_per_sample(model, out).item()
    assert gmacs == pytest.approx(fvcore_gflops(model, x), rel=1e-6)
    assert gmacs < dense_gmacs(PolicyModel(model.backbone, NoDropPolicy(), 1), 16)


def test_default_locations_are_quarters_of_the_depth_by_hand() -> None:
    """floor(k depth / 4), k = 1, 2, 3, 0-based: 12 blocks -> 3, 6, 9 (the paper's 4th, 7th and 10th blocks);
    6 (the main-job models) -> 1 (1.5), 3, 4 (4.5); 4 -> 1, 2, 3; 2 -> 0, 1 (the repeated 1 once)."""
    assert [depth_quarters(depth) for depth in (12, 6, 4, 2)] == [[3, 6, 9], [1, 3, 4], [1, 2, 3], [0, 1]]
    assert resolve_locations([], 6) == [1, 3, 4] and resolve_locations([0, 5], 6) == [0, 5]
    video = build_model(load_config(os.path.join(ROOT, "configs", "Synthetic", "tsf_tiny_iared.yaml"),
                                    ["METHOD.NAME", "evit"]))  # the 6-block main-job video model, no keys typed
    assert video.policy.locations == [1, 3, 4]


def test_config_builds_evit_and_rejects_bad_locations() -> None:
    tiny = ["MODEL.DEPTH", "4", "MODEL.EMBED_DIM", "32", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
            "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "METHOD.NAME", "evit"]
    model = build_model(load_config(None, [*tiny, "EVIT.LOCATIONS", "[1, 2]", "EVIT.KEEP_RATE", "0.5"]))
    assert isinstance(model.policy, EViTReducer) and model.policy.locations == [1, 2] and model.policy.keep_rate == 0.5
    default = build_model(load_config(None, tiny))  # [] resolves from the depth: floor(4/4), 4/2, floor(12/4)
    assert default.policy.locations == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"EVIT.LOCATIONS must increase strictly within \[0, 4\)"):
        load_config(None, [*tiny, "EVIT.LOCATIONS", "[1, 4]"])
    with pytest.raises(ConfigError, match=r"EVIT.KEEP_RATE must lie in \(0, 1\]"):
        load_config(None, [*tiny, "EVIT.LOCATIONS", "[1]", "EVIT.KEEP_RATE", "0.0"])


def _reference_evit(backbone, x: torch.Tensor, keep_rate: float, locations: list[int]) -> torch.Tensor:
    """EViT from the paper, one sample at a time, attention written out: at a location keep the top
    ``ceil(kappa n)`` tokens by head-averaged class attention and append ``sum a_i x_i`` over the rest."""
    emb = backbone.embed(x[None])
    prefix = emb.prefix.shape[1]
    tokens = torch.cat([emb.prefix, emb.patches], dim=1)[0]
    for index, block in enumerate(backbone.blocks):
        attn, (length, dim) = block.attn, tokens.shape
        q, k, v = attn.qkv(block.norm1(tokens)).view(length, 3, attn.num_heads, -1).unbind(1)
        probs = torch.einsum("qhd,khd->hqk", q * attn.scale, k).softmax(-1)
        tokens = tokens + block.ls1(attn.proj(torch.einsum("hqk,khd->qhd", probs, v).reshape(length, dim)))
        if index in locations:
            attentive = probs[:, 0, prefix:].mean(0)
            top = set(attentive.topk(math.ceil(keep_rate * len(attentive))).indices.tolist())
            rest = [i for i in range(len(attentive)) if i not in top]
            fused = sum(attentive[i] * tokens[prefix + i] for i in rest)
            kept = [tokens[prefix + i] for i in sorted(top)]
            tokens = torch.cat([tokens[:prefix], torch.stack([*kept, fused])])
        tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
    return backbone.forward_head(tokens[None, :prefix])[0]


@pytest.mark.parametrize("case", ["image", "video"])
def test_evit_logits_equal_a_per_sample_reference_of_the_paper(case: str) -> None:
    backbone, x = _backbone_and_input(case)
    model = ReducingViT(backbone, EViTReducer(0.7, [1, 2, 3])).eval()
    with torch.no_grad():
        want = torch.stack([_reference_evit(backbone, sample, 0.7, [1, 2, 3]) for sample in x])
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model(x, return_policy=True).logits, want, atol=1e-5, rtol=1e-4)
