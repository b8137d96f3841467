"""ToMe worked by hand: which pairs merge, size-weighted means, proportional attention, r = 0, exact counts."""

from __future__ import annotations

import math

import pytest
import torch

from iared_video.config import ConfigError
from iared_video.methods import build_model, load_config, model_gmacs_per_sample
from iared_video.methods.tome import ToMeReducer, bipartite_soft_matching, merge_wavg, merged_order, tokens_merged
from iared_video.models import NoDropPolicy, PolicyModel, TimeSformer, TimmViT
from iared_video.models.backbones import Embedded
from iared_video.models.flops import dense_gmacs, fvcore_gflops
from iared_video.models.reduction import ReducerState, ReducingViT
from iared_video.models.token_ops import Attended, attention

# Six tokens; A = tokens 0, 2, 4 and B = tokens 1, 3, 5. Cosine similarities of the metric, by hand:
#   A0 = (1, 0):     B0 (1, .1) 0.995, B1 (0, 1) 0,     B2 (-1, 0) -1    -> best B0, 0.995
#   A1 = (0, 1):     B0 0.0995,        B1 1.0,          B2 0             -> best B1, 1.0
#   A2 = (1, 1):     B0 0.774,         B1 0.707,        B2 -0.707        -> best B0, 0.774
# With r = 2 the two most similar joins are A1 -> B1 and A0 -> B0: token 2 merges into 3, token 0 into 1.
METRIC = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
SIZES = torch.tensor([[1.0, 2.0, 1.0, 1.0, 3.0, 1.0]])
FEATURES = torch.tensor([[[3.0, 0.0], [0.0, 3.0], [6.0, 6.0], [2.0, 0.0], [5.0, 5.0], [1.0, 1.0]]])


def test_bipartite_soft_matching_picks_the_most_similar_joins_by_hand() -> None:
    match = bipartite_soft_matching(METRIC, r=2)
    assert match.src.tolist() == [[1, 0]] and match.dst.tolist() == [[1, 0]]  # A1 -> B1, then A0 -> B0
    assert match.unmerged.tolist() == [[2]]  # A2 stays
    match = bipartite_soft_matching(METRIC, r=3)
    assert match.src.tolist() == [[1, 0, 2]] and match.dst.tolist() == [[1, 0, 0]]  # A2 joins B0 as well
    assert match.unmerged.shape == (1, 0)


def test_merged_values_are_size_weighted_means_in_tomes_order() -> None:
    """Tokens left: [unmerged A = token 4, B = tokens 1, 3, 5], the reference code's order."""
    match = bipartite_soft_matching(METRIC, r=2)
    merged, sizes = merge_wavg(FEATURES, SIZES, match)
    # token 1 (size 2) absorbs token 0 (size 1): (1 * (3, 0) + 2 * (0, 3)) / 3 = (1, 2), size 3
    # token 3 (size 1) absorbs token 2 (size 1): ((6, 6) + (2, 0)) / 2 = (4, 3), size 2
    torch.testing.assert_close(merged[0], torch.tensor([[5.0, 5.0], [1.0, 2.0], [4.0, 3.0], [1.0, 1.0]]))
    assert sizes.tolist() == [[3.0, 3.0, 2.0, 1.0]] and sizes.sum() == SIZES.sum()
    assert merged_order(torch.arange(6)[None], match).tolist() == [[4, 1, 3, 5]]
    # unit sizes (before any merge): plain means, (3, 0) + (0, 3) -> (1.5, 1.5); sizes 1, 2, 2, 1
    unit, unit_sizes = merge_wavg(FEATURES, None, match)
    torch.testing.assert_close(unit[0], torch.tensor([[5.0, 5.0], [1.5, 1.5], [4.0, 3.0], [1.0, 1.0]]))
    assert unit_sizes.tolist() == [[1.0, 2.0, 2.0, 1.0]]
    torch.testing.assert_close(unit, merge_wavg(FEATURES, torch.ones_like(SIZES), match)[0])


def _state(features: torch.Tensor) -> ReducerState:
    prefix = torch.full((1, 1, features.shape[-1]), 9.0)
    return ReducerState(Embedded(prefix, features.clone(), features.clone(), (1, 1, features.shape[1])))


def test_reducer_merges_keeps_the_class_token_and_its_origins() -> None:
    state = _state(FEATURES)
    state.size = SIZES.clone()
    keys = torch.cat([torch.zeros(1, 1, 2), METRIC], dim=1)[..., None, :].expand(-1, -1, 2, -1)  # 2 heads, same
    ToMeReducer([2]).reduce(0, state, Attended(keys=keys.reshape(-1, 2, 2)))
    assert state.x.shape == (1, 5, 2) and (state.x[0, 0] == 9.0).all()  # class token untouched
    torch.testing.assert_close(state.patches[0], torch.tensor([[5.0, 5.0], [1.0, 2.0], [4.0, 3.0], [1.0, 1.0]]))
    assert state.origin.tolist() == [[4, 1, 3, 5]] and state.keep_mask().tolist() == [[0, 1, 0, 1, 1, 1]]
    bias = ToMeReducer([2]).key_bias(state)
    torch.testing.assert_close(bias, torch.tensor([[0.0, math.log(3), math.log(3), math.log(2), 0.0]]))
    untracked = ReducerState(Embedded(torch.zeros(1, 1, 2), FEATURES.clone(), FEATURES.clone(), (1, 1, 6)),
                             record=False)  # no return_policy: origins are not tracked, the merge is the same
    ToMeReducer([2]).reduce(0, untracked, Attended(keys=keys.reshape(-1, 2, 2)))
    assert untracked.origin is None and untracked.size.tolist() == [[1.0, 2.0, 2.0, 1.0]]


def test_proportional_attention_adds_log_size_and_equals_attending_to_copies() -> None:
    """A key of size s with ``+ log s`` is attended as s copies of it: softmax weights ``s e^z / sum s e^z``."""
    torch.manual_seed(0)
    block = TimmViT("test_vit", num_classes=2, img_size=32).blocks[0].eval()
    x = torch.randn(1, 4, block.attn.qkv.in_features)
    sizes = torch.tensor([[1.0, 3.0, 1.0, 2.0]])
    copies = x.repeat_interleave(sizes[0].long(), dim=1)  # 7 tokens
    with torch.no_grad():
        proportional = attention(block.attn, x, key_bias=sizes.log(), probs=True)
        copied = attention(block.attn, copies)
        plain = attention(block.attn, x, probs=True).probs
    want = plain * sizes[:, None, None, :]
    torch.testing.assert_close(proportional.probs, want / want.sum(-1, keepdim=True), atol=1e-6, rtol=1e-5)
    first_copy = torch.tensor([0, 1, 4, 5])  # the row of each original token among the copies
    torch.testing.assert_close(proportional.out, copied.out[:, first_copy], atol=1e-5, rtol=1e-5)


def _tiny_vit() -> TimmViT:
    torch.manual_seed(0)
    return TimmViT("test_vit", num_classes=5, img_size=64).eval()  # 16 patches at 64 px


def _tiny_tsf() -> TimeSformer:
    torch.manual_seed(0)
    return TimeSformer(num_classes=5, img_size=32, num_frames=2, patch_size=8, embed_dim=32, depth=4,
                       num_heads=2).eval()  # 2 frames x 16 patches


@pytest.mark.parametrize("case", ["image", "video"])
def test_r_zero_is_the_dense_model_bitwise(case: str) -> None:
    backbone = _tiny_vit() if case == "image" else _tiny_tsf()
    x = torch.randn(3, 3, 64, 64) if case == "image" else torch.randn(3, 3, 2, 32, 32)
    tome = ReducingViT(backbone, ToMeReducer([0] * len(backbone.blocks))).eval()
    dense = PolicyModel(backbone, NoDropPolicy(), 1).eval()
    with torch.no_grad():
        assert torch.equal(tome(x), dense(x))
        out = tome(x, return_policy=True)
    num = out.keep[0].shape[1]
    assert all(k.all() for k in out.keep) and [t.tolist() for t in out.tokens] == [[num] * 3] * len(out.tokens)
    assert model_gmacs_per_sample(tome, out).tolist() == [dense_gmacs(dense, num)] * 3


def _counts_seen(model: ReducingViT, x: torch.Tensor) -> tuple[list[int], list[int]]:
    """Tokens per sample entering each block's attention (``norm1``) and its MLP (``norm2``)."""
    attn, mlp, batch = [], [], x.shape[0]
    hooks = [b.norm1.register_forward_pre_hook(lambda m, a: attn.append(a[0].shape[0] // batch))
             for b in model.backbone.blocks]
    hooks += [b.norm2.register_forward_pre_hook(lambda m, a: mlp.append(a[0].shape[0] // batch))
              for b in model.backbone.blocks]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return attn, mlp


def test_merged_token_counts_are_exact_per_layer_on_a_jointst_clip() -> None:
    """32 patches, r = 10: 32 -> 22 -> 12 -> 6 (capped at 12 // 2) -> 3 (6 // 2), every frame merged together."""
    backbone = _tiny_tsf()
    model = ReducingViT(backbone, ToMeReducer([10] * 4)).eval()
    left = [32]
    for _ in range(4):
        left.append(left[-1] - tokens_merged(10, left[-1]))
    assert left == [32, 22, 12, 6, 3]
    x = torch.randn(2, 3, 2, 32, 32)
    attn, mlp = _counts_seen(model, x)
    assert attn == [n + 1 for n in left[:-1]] and mlp == [n + 1 for n in left[1:]]  # + the class token
    with torch.no_grad():
        out = model(x, return_policy=True)
    assert [t.tolist() for t in out.tokens] == [[n, n] for n in left[1:]]
    assert [k.sum(1).tolist() for k in out.keep] == [[n, n] for n in left[1:]]
    with torch.no_grad():
        torch.testing.assert_close(model(x[1:]), out.logits[1:], atol=1e-5, rtol=1e-4)  # batch-independent


def test_jointst_matching_spans_every_patch_of_every_frame_never_the_class_token() -> None:
    """r = N / 2 in the first block: every token of set A (even positions over both frames) merges away."""
    model = ReducingViT(_tiny_tsf(), ToMeReducer([16, 0, 0, 0])).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 2, 32, 32), return_policy=True)
    odd = torch.arange(32) % 2 == 1
    assert torch.equal(out.keep[0], odd.expand(2, -1)) and out.tokens[0].tolist() == [16, 16]


@pytest.mark.parametrize("r", [2, 5])
def test_tome_gmacs_per_sample_match_fvcore(r: int) -> None:
    model = ReducingViT(_tiny_vit(), ToMeReducer([r] * 6)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
    assert out.tokens[-1].item() < 16
    assert model_gmacs_per_sample(model, out).item() == pytest.approx(fvcore_gflops(model, x), rel=1e-6)
    dense = PolicyModel(model.backbone, NoDropPolicy(), 1)
    assert model_gmacs_per_sample(model, out).item() < model_gmacs_per_sample(dense, [[16]], 16).item()


def test_config_builds_tome_with_a_schedule_and_rejects_bad_ones() -> None:
    tiny = ["MODEL.DEPTH", "4", "MODEL.EMBED_DIM", "32", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
            "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "METHOD.NAME", "tome"]
    model = build_model(load_config(None, [*tiny, "TOME.R_PER_LAYER", "[4, 0, 2, 1]", "TOME.PROP_ATTN", "False"]))
    assert isinstance(model.policy, ToMeReducer) and model.policy.r == [4, 0, 2, 1] and not model.policy.prop_attn
    assert [model.policy.acts_on(i) for i in range(4)] == [True, False, True, True]
    with pytest.raises(ConfigError, match="TOME.R_PER_LAYER must list 4 integers"):
        load_config(None, [*tiny, "TOME.R_PER_LAYER", "[1, 2]"])
    with pytest.raises(ConfigError, match="joint space-time attention only"):
        load_config(None, [*tiny, "MODEL.ATTENTION_TYPE", "divided_space_time"])


# ----------------------------------------------------------------------------- per-sample reference


def _attention_residual(block, tokens: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's ``x + Attn(norm1(x))`` written out, with ``+ log s`` on each key's logits; and the keys."""
    attn, (length, dim) = block.attn, tokens.shape
    q, k, v = attn.qkv(block.norm1(tokens)).view(length, 3, attn.num_heads, -1).unbind(1)  # (L, H, d)
    logits = torch.einsum("qhd,khd->hqk", q * attn.scale, k) + sizes.log()
    out = torch.einsum("hqk,khd->qhd", logits.softmax(-1), v).reshape(length, dim)
    return tokens + block.ls1(attn.proj(out)), k


def _reference_merge(tokens: torch.Tensor, sizes: torch.Tensor, keys: torch.Tensor, r: int):
    """ToMe's bipartite soft matching on one sample's ``(n, C)`` patch tokens, token by token."""
    metric = torch.nn.functional.normalize(keys.mean(1), dim=-1)
    set_a, set_b = list(range(0, len(tokens), 2)), list(range(1, len(tokens), 2))
    best = [max(set_b, key=lambda j: float(metric[i] @ metric[j])) for i in set_a]  # each A token's best B
    similarity = [float(metric[i] @ metric[j]) for i, j in zip(set_a, best)]
    merged_away = sorted(range(len(set_a)), key=lambda a: -similarity[a])[:r]
    total = {j: tokens[j] * sizes[j] for j in set_b}
    size = {j: sizes[j].clone() for j in set_b}
    for a in merged_away:
        total[best[a]] = total[best[a]] + tokens[set_a[a]] * sizes[set_a[a]]
        size[best[a]] = size[best[a]] + sizes[set_a[a]]
    left = [set_a[a] for a in range(len(set_a)) if a not in merged_away]  # [unmerged A, every B]
    new_tokens = [tokens[i] for i in left] + [total[j] / size[j] for j in set_b]
    return torch.stack(new_tokens), torch.stack([sizes[i] for i in left] + [size[j] for j in set_b])


def _reference_tome(backbone, x: torch.Tensor, r: int) -> torch.Tensor:
    """ToMe from the paper, one sample at a time: attention with proportional attention, merge, MLP."""
    emb = backbone.embed(x[None])
    prefix = emb.prefix.shape[1]
    tokens, sizes = torch.cat([emb.prefix, emb.patches], dim=1)[0], torch.ones(prefix + emb.patches.shape[1])
    for block in backbone.blocks:
        tokens, keys = _attention_residual(block, tokens, sizes)
        merge = tokens_merged(r, len(tokens) - prefix)
        if merge:
            patches, patch_sizes = _reference_merge(tokens[prefix:], sizes[prefix:], keys[prefix:], merge)
            tokens, sizes = torch.cat([tokens[:prefix], patches]), torch.cat([sizes[:prefix], patch_sizes])
        tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
    return backbone.forward_head(tokens[None, :prefix])[0]


@pytest.mark.parametrize("case", ["image", "video"])
def test_tome_logits_equal_a_per_sample_reference_of_the_paper(case: str) -> None:
    """Every block merging (r = 3 on 16 or 32 patches): the batched gathers and scatter-reduce give the logits of
    the sample-by-sample reference in the reference code's token order, to float tolerance."""
    backbone = _tiny_vit() if case == "image" else _tiny_tsf()
    x = torch.randn(3, 3, 64, 64) if case == "image" else torch.randn(3, 3, 2, 32, 32)
    model = ReducingViT(backbone, ToMeReducer([3] * len(backbone.blocks))).eval()
    with torch.no_grad():
        want = torch.stack([_reference_tome(backbone, sample, 3) for sample in x])
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model(x, return_policy=True).logits, want, atol=1e-5, rtol=1e-4)
