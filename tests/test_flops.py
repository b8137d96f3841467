"""FLOPs (fvcore convention, 1 MAC = 1 flop): dense totals of the real archs, per-sample counts from keep masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iared_video.methods import model_gmacs_per_sample
from iared_video.methods.fixed_ratio import AttentionPolicy, RandomPolicy, TemporalDiffPolicy
from iared_video.methods.iared.interpreter import MultiHeadInterpreter, interpreter_macs
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models import NoDropPolicy, PolicyModel, TimeSformer, TimmViT
from iared_video.models.flops import block_macs, dense_gmacs, fvcore_gflops, sdpa_flop_jit


# ---------------------------------------------------------------------------
# Dense totals of the published architectures.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch,published", [("deit_small_patch16_224", 4.6), ("deit_base_patch16_224", 17.6)])
def test_deit_dense_gmacs_match_published_and_analytic(arch, published):
    model = PolicyModel(TimmViT(arch, num_classes=1000), NoDropPolicy(), num_groups=1)
    measured = fvcore_gflops(model, torch.randn(1, 3, 224, 224))
    analytic = dense_gmacs(model, num_patches=14 * 14)
    assert measured == pytest.approx(published, rel=0.01)
    assert analytic == pytest.approx(measured, rel=0.01)


def vit_b_timesformer_gmacs(frames: int = 8, size: int = 224, patch: int = 16, dim: int = 768, depth: int = 12,
                            classes: int = 400) -> float:
    """JointST ViT-B written out by hand: patch conv, 12 blocks on 1 + T*h*w tokens, head."""
    patches = frames * (size // patch) ** 2
    n = patches + 1
    per_block = 12 * n * dim ** 2 + 2 * n ** 2 * dim + 10 * n * dim  # qkv+proj+MLP, QK^T+AV, two LayerNorms
    return (patches * dim * 3 * patch ** 2 + depth * per_block + 5 * dim + dim * classes) / 1e9


def test_timesformer_vitb_8x224_analytic_and_fvcore_on_two_blocks():
    expected = vit_b_timesformer_gmacs()
    assert expected == pytest.approx(180, abs=2)
    full = PolicyModel(TimeSformer(num_classes=400), NoDropPolicy(), num_groups=1)
    assert dense_gmacs(full, num_patches=8 * 196) == pytest.approx(expected, rel=1e-9)

    shallow = PolicyModel(TimeSformer(num_classes=400, depth=2), NoDropPolicy(), num_groups=1)  # real widths and tokens
    measured = fvcore_gflops(shallow, torch.randn(1, 3, 8, 224, 224))
    assert measured == pytest.approx(vit_b_timesformer_gmacs(depth=2), rel=0.01)
    assert dense_gmacs(shallow, num_patches=8 * 196) == pytest.approx(measured, rel=0.01)


@pytest.mark.slow
def test_timesformer_vitb_8x224_fvcore_full_depth():
    model = PolicyModel(TimeSformer(num_classes=400), NoDropPolicy(), num_groups=1)
    measured = fvcore_gflops(model, torch.randn(1, 3, 8, 224, 224))
    assert measured == pytest.approx(vit_b_timesformer_gmacs(), rel=0.01)
    assert measured == pytest.approx(180, abs=2)


def test_block_macs_formula():
    n, c = 197, 384
    assert block_macs(n, c, count_norms=False) == 3 * n * c * c + 2 * n * n * c + n * c * c + 8 * n * c * c
    assert block_macs(n, c) - block_macs(n, c, count_norms=False) == 10 * n * c


def test_sdpa_handle_counts_both_matmuls():
    class Attend(nn.Module):
        def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    by_hand = 2 * 2 * 3 * 5 * 7 * 8  # QK^T and AV: B * H * Lq * Lk * d multiply-adds each
    assert fvcore_gflops(Attend(), (q, k, v)) * 1e9 == pytest.approx(by_hand)
    from fvcore.nn import FlopCountAnalysis

    bare = FlopCountAnalysis(Attend(), (q, k, v)).unsupported_ops_warnings(False)
    assert bare.total() == 0  # fvcore alone counts fused attention as nothing: the handle is what counts it
    handled = FlopCountAnalysis(Attend(), (q, k, v)).unsupported_ops_warnings(False)
    assert handled.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit).total() == by_hand


# ---------------------------------------------------------------------------
# Per-sample counts from keep masks (tiny model).
# ---------------------------------------------------------------------------
C, DEPTH, GROUPS, CLASSES, PATCH, FRAMES, SIZE = 64, 4, 2, 7, 8, 2, 32
N = FRAMES * (SIZE // PATCH) ** 2  # 32 patch tokens
I_HEADS, I_DIM = 2, 16


def tiny_model(policy: nn.Module) -> PolicyModel:
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=CLASSES, img_size=SIZE, num_frames=FRAMES, patch_size=PATCH, embed_dim=C,
                           depth=DEPTH, num_heads=4)
    return PolicyModel(backbone, policy, GROUPS).eval()


def interpreter_model() -> PolicyModel:
    model = tiny_model(InterpreterPolicy(C, GROUPS, threshold=0.5, num_heads=I_HEADS, head_dim=I_DIM))
    with torch.no_grad():  # sharper scores, so samples keep clearly different numbers of tokens
        for interp in model.policy.interpreters:
            interp.query.weight.normal_(std=0.3)
            interp.policy_token.normal_()
    return model


def hand_block(n: Tensor) -> Tensor:
    return 12 * n * C ** 2 + 2 * n ** 2 * C + 10 * n * C


def hand_interpreter(scored: Tensor) -> Tensor:
    return scored * C * I_HEADS  # the folded F_q on the tokens (F_k on P and the fold: once per weights)


def test_interpreter_macs_with_hidden_layer_by_hand():
    """INTERPRETER_HIDDEN W: each scored token meets Linear(C, W) and the folded W x H map (the fold itself is
    computed once per weights, not per forward)."""
    hidden, scored = 5, torch.tensor([7.0, 0.0])
    interp = MultiHeadInterpreter(C, I_HEADS, I_DIM, hidden=hidden)
    expected = scored * (C * hidden + hidden * I_HEADS)
    torch.testing.assert_close(interpreter_macs(interp, scored), expected)


def test_per_sample_gmacs_from_keep_masks_match_hand_formula():
    model = interpreter_model()
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(torch.randn(4, 3, FRAMES, SIZE, SIZE), return_policy=True)
    kept0, kept1 = (k.sum(dim=1).double() for k in out.keep)
    assert len(set(kept1.tolist())) > 1 and (kept1 < kept0).any() and (kept0 < N).all()

    group_size = DEPTH // GROUPS
    expected = (N * C * 3 * PATCH ** 2 + hand_interpreter(torch.full_like(kept0, N))
                + group_size * hand_block(kept0 + 1) + hand_interpreter(kept0)
                + group_size * hand_block(kept1 + 1) + 5 * C + C * CLASSES) / 1e9
    gmacs = model_gmacs_per_sample(model, out)
    torch.testing.assert_close(gmacs, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(model_gmacs_per_sample(model, torch.stack([kept0, kept1], 1), num_patches=N), gmacs)

    for i in range(4):  # a sample keeping no more tokens in any group than another costs no more
        for j in range(4):
            if kept0[i] <= kept0[j] and kept1[i] <= kept1[j]:
                assert gmacs[i] <= gmacs[j]
    all_kept = model_gmacs_per_sample(model, [N, N], num_patches=N)
    assert (gmacs < all_kept).all()
    assert all_kept[0] > dense_gmacs(model, N)  # the interpreters cost something


def test_fewer_kept_tokens_give_fewer_gmacs():
    model = interpreter_model()
    counts = torch.tensor([[32, 32], [32, 20], [20, 20], [20, 8], [8, 1]])
    gmacs = model_gmacs_per_sample(model, counts, num_patches=N)
    assert (gmacs.diff() < 0).all()


@pytest.mark.parametrize("policy", ["interpreter", "attention", "random", "temporal_diff"])
def test_per_sample_gmacs_match_fvcore_on_each_sample(policy):
    """fvcore traces the real forward: a sample that dropped tokens must cost what its keep masks say."""
    fixed = {"attention": AttentionPolicy, "random": RandomPolicy, "temporal_diff": TemporalDiffPolicy}
    model = interpreter_model() if policy == "interpreter" else tiny_model(fixed[policy](0.3))
    torch.manual_seed(2)
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    for i in range(2):
        sample = x[i:i + 1]
        torch.manual_seed(3)
        with torch.no_grad():
            out = model(sample, return_policy=True)
        torch.manual_seed(3)
        measured = fvcore_gflops(model, sample)
        assert out.keep[-1].sum() < N
        assert model_gmacs_per_sample(model, out).item() == pytest.approx(measured, rel=2e-3)
