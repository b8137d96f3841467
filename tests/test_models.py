"""Models: timm equivalence, Eq. 1 by hand, real token removal, hierarchy, batch independence, input errors."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from iared_video.methods import build_model, load_config
from iared_video.methods.iared import threshold_policy
from iared_video.methods.iared.interpreter import MultiHeadInterpreter
from iared_video.methods.iared.policy import InterpreterPolicy, temporal_difference
from iared_video.models import PolicyModel, TimeSformer
from iared_video.models.backbones import Embedded
from iared_video.models.packed import PackedSeqs, block_diagonal_sdpa
from iared_video.models.policies import GroupInput

TINY_TSF = ["MODEL.EMBED_DIM", "64", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "4", "DATA.NUM_FRAMES", "4",
            "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64", "MODEL.NUM_CLASSES", "5"]


def tiny_tsf(policy: str = "iared", groups: int = 2, **extra: str) -> PolicyModel:
    opts = TINY_TSF + ["METHOD.NAME", policy, "IARED.NUM_GROUPS", str(groups)]
    for key, value in extra.items():
        opts += [key, value]
    return build_model(load_config(None, opts)).eval()


def deit(arch: str, policy: str) -> PolicyModel:
    cfg = load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", arch, "MODEL.NUM_CLASSES", "1000",
                             "METHOD.NAME", policy, "IARED.NUM_GROUPS", "3"])
    return build_model(cfg).eval()


@pytest.mark.parametrize("arch", ["deit_tiny_patch16_224", "deit_small_patch16_224",
                                  "deit_tiny_distilled_patch16_224"])
@pytest.mark.parametrize("policy", ["dense", "iared"])
def test_deit_matches_timm(arch: str, policy: str) -> None:
    torch.manual_seed(0)
    model = deit(arch, policy)
    if policy == "iared":
        model.policy.threshold = 0.0  # sigmoid scores are > 0: every token is kept
    reference = timm.create_model(arch, pretrained=False).eval()
    reference.load_state_dict(model.backbone.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = model(x, return_policy=True)
        expected = reference(x)
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=0)
    assert bool(out.keep[-1].all())


def test_interpreter_equation_one_by_hand() -> None:
    interp = MultiHeadInterpreter(dim=3, num_heads=2, head_dim=2)
    with torch.no_grad():
        interp.policy_token.copy_(torch.tensor([[1.0, -1.0, 0.5]]))
        interp.query.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
        interp.query.bias.copy_(torch.tensor([0.0, 0.1, 0.0, -0.2]))
        interp.key.weight.copy_(torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [1, 0, 0], [0, 0, 2]]))
        interp.key.bias.zero_()
    token = [0.2, -0.4, 1.0]
    # F_k(P): head 0 -> (0.5, -0.5), head 1 -> (1.0, 1.0)
    # F_q(X): head 0 -> (0.2, -0.3), head 1 -> (1.0, 0.6)
    head0 = 0.2 * 0.5 + (-0.3) * (-0.5)
    head1 = 1.0 * 1.0 + 0.6 * 1.0
    expected = 0.5 * (1 / (1 + math.exp(-head0)) + 1 / (1 + math.exp(-head1)))
    assert interp(torch.tensor([token])).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("hidden", [0, 7])
def test_folded_interpreter_matches_unfolded_maps_in_value_and_gradient(hidden: int) -> None:
    """head_logits folds F_k(P) into F_q; Eq. 1 written with the unfolded maps is the reference."""
    torch.manual_seed(0)
    interp = MultiHeadInterpreter(dim=6, num_heads=3, head_dim=4, hidden=hidden)
    with torch.no_grad():
        for p in interp.parameters():
            p.normal_()
    tokens = torch.randn(2, 5, 6)

    def unfolded() -> torch.Tensor:
        features = torch.nn.functional.gelu(interp.hidden[0](tokens)) if hidden else tokens
        query = interp.query(features).view(2, 5, 3, 4)
        key = interp.key(interp.policy_token).view(3, 4)
        return (query * key).sum(-1).sigmoid().mean(-1)

    weights = torch.randn(2, 5)
    grads = []
    for score in (interp, unfolded):
        interp.zero_grad()
        value = score(tokens) if score is interp else score()
        (value * weights).sum().backward()
        grads.append((value.detach(), [p.grad.clone() for p in interp.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for folded_grad, reference_grad in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(folded_grad, reference_grad)


def test_serving_interpreter_reuses_its_folded_map_until_a_parameter_changes() -> None:
    """Without autograd the folded ``F_k(P)``-into-``F_q`` map is computed once and kept; an in-place change of
    any parameter (an optimiser step, a checkpoint load) makes the next call fold again. Reference: the same
    scores with autograd on, where nothing is kept."""
    torch.manual_seed(0)
    interp = MultiHeadInterpreter(dim=6, num_heads=3, head_dim=4, hidden=5)
    tokens = torch.randn(7, 6)

    def reference() -> torch.Tensor:
        with torch.enable_grad():
            return interp(tokens).detach()

    with torch.inference_mode():
        first = interp(tokens)
        kept = interp._fold_cache[1][0] if interp._fold_cache else None
        assert kept is not None and interp(tokens) is not None and interp._fold_cache[1][0] is kept
    torch.testing.assert_close(first, reference(), rtol=0, atol=0)
    for param in (interp.key.weight, interp.policy_token, interp.query.bias):
        with torch.no_grad():
            param.add_(0.5)
            changed = interp(tokens)
        torch.testing.assert_close(changed, reference(), rtol=0, atol=0)
        assert not torch.equal(changed, first)
        first = changed


def test_interpreter_hidden_layer_by_hand() -> None:
    """INTERPRETER_HIDDEN: F_q^h(X) = W_q GELU(W_1 X + b_1) + b_q, worked for one token and one head."""
    interp = MultiHeadInterpreter(dim=2, num_heads=1, head_dim=2, hidden=2)
    with torch.no_grad():
        interp.hidden[0].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))  # |x_0 - x_1| from two halves
        interp.hidden[0].bias.zero_()
        interp.query.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
        interp.query.bias.copy_(torch.tensor([-1.0, 0.0]))
        interp.key.weight.zero_()
        interp.key.bias.copy_(torch.tensor([2.0, 3.0]))
    gelu = lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    for token, diff in (([0.5, -0.5], 1.0), ([-0.5, 0.5], -1.0), ([0.2, 0.2], 0.0)):
        logit = 2.0 * (gelu(diff) + gelu(-diff) - 1.0)  # key (2, 3) meets query (g(d) + g(-d) - 1, 0)
        assert interp(torch.tensor([token])).item() == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-6)
    # the score depends on |x_0 - x_1|, not its sign: what one linear map cannot do
    assert interp(torch.tensor([[0.5, -0.5]])).item() == pytest.approx(interp(torch.tensor([[-0.5, 0.5]])).item())
    with pytest.raises(ValueError, match="hidden"):
        MultiHeadInterpreter(dim=2, hidden=-1)


def test_content_input_scores_the_patch_embedding_without_position_or_time() -> None:
    """INTERPRETER_INPUT content: group 0's interpreter sees Embedded.raw, "tokens" the positioned patches."""
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=3, img_size=32, num_frames=2, patch_size=16, embed_dim=16, depth=2,
                           num_heads=2, pos_embed_std=1.0, time_embed_std=1.0)
    scores = {}
    for kind in ("tokens", "content"):
        policy = InterpreterPolicy(16, 1, num_heads=2, head_dim=4, hidden=8, input_kind=kind)
        with torch.no_grad():
            policy.interpreters[0].query.weight.normal_()
        model = PolicyModel(backbone, policy, num_groups=1).eval()
        x = torch.randn(2, 3, 2, 32, 32)
        with torch.no_grad():
            out, embedded = model(x, return_policy=True), backbone.embed(x)
            seen = embedded.raw if kind == "content" else embedded.patches
            torch.testing.assert_close(out.scores[0], policy.interpreters[0](seen))
            scores[kind] = out.scores[0]
    assert not torch.allclose(scores["tokens"], scores["content"])
    with pytest.raises(ValueError, match="input_kind"):
        InterpreterPolicy(16, 1, input_kind="pixels")


def test_temporal_difference_by_hand() -> None:
    """Each patch minus the same patch one frame earlier; the first frame takes minus the second's change."""
    raw = torch.tensor([[1.0, 10.0], [2.0, 30.0], [7.0, 20.0]])  # 3 frames of 2 patches, C = 1
    emb = Embedded(prefix=torch.zeros(1, 1, 1), patches=raw.view(1, 6, 1), raw=raw.view(1, 6, 1), grid=(3, 1, 2))
    expected = [[-1.0, -20.0], [1.0, 20.0], [5.0, -10.0]]
    assert temporal_difference(emb).view(3, 2).tolist() == expected
    trained = raw.view(1, 6, 1).clone().requires_grad_()  # the autograd path (training) gives the same values
    emb_grad = Embedded(prefix=torch.zeros(1, 1, 1), patches=trained, raw=trained, grid=(3, 1, 2))
    diff = temporal_difference(emb_grad)
    assert diff.detach().view(3, 2).tolist() == expected
    diff.sum().backward()  # (r0 - r1) + (r1 - r0) + (r2 - r1): d/dr0 = 0, d/dr1 = -1, d/dr2 = 1
    assert trained.grad.view(3, 2).tolist() == [[0.0, 0.0], [-1.0, -1.0], [1.0, 1.0]]
    single = Embedded(prefix=torch.zeros(1, 1, 1), patches=raw[:1].view(1, 2, 1), raw=raw[:1].view(1, 2, 1),
                      grid=(1, 1, 2))
    assert temporal_difference(single).abs().sum().item() == 0.0


def test_difference_input_scores_the_change_of_the_patch_embedding() -> None:
    """INTERPRETER_INPUT difference: group 0's interpreter sees raw_t - raw_(t-1) of the backbone's embedding."""
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=3, img_size=32, num_frames=2, patch_size=16, embed_dim=16, depth=2,
                           num_heads=2)
    policy = InterpreterPolicy(16, 1, num_heads=2, head_dim=4, hidden=8, input_kind="difference")
    model = PolicyModel(backbone, policy, num_groups=1).eval()
    x = torch.randn(2, 3, 2, 32, 32)
    x[1, :, 1] = x[1, :, 0]  # video 1 does not move: its difference is zero at every patch
    with torch.no_grad():
        out, raw = model(x, return_policy=True), backbone.embed(x).raw.view(2, 2, 4, 16)
        change = raw[:, 1] - raw[:, 0]
        seen = torch.stack([-change, change], 1).flatten(0, 2)
        torch.testing.assert_close(out.scores[0].flatten(), policy.interpreters[0](seen))
        still = policy.interpreters[0](torch.zeros(1, 16))
        torch.testing.assert_close(out.scores[0][1], still.expand(8))
        assert out.scores[0][0].std() > 1e-4  # the moving video's patches are told apart


def test_expected_count_decision_keeps_the_rounded_score_sum_best_tokens() -> None:
    """IARED.DECISION expected_count: sample b keeps its round(sum_i I_i) highest-scored tokens."""
    policy = InterpreterPolicy(4, 1, threshold=0.5, decision="expected_count")
    scores = torch.tensor([0.9, 0.6, 0.2, 0.1, 0.55, 0.5, 0.35])  # sums 1.8 -> 2 and 1.4 -> 1
    seqs = PackedSeqs.from_lengths([1 + 4, 1 + 3], torch.device("cpu"))  # a class token, then 4 and 3 patches
    inp = GroupInput(0, torch.zeros(7, 4), 2, 4, None, None, seqs, 1)  # type: ignore[arg-type]
    assert policy.keep(inp, scores, "greedy").tolist() == [True, True, False, False, True, False, False]
    assert threshold_policy(policy, 0.5).keep(inp, scores, "greedy").tolist() == [True, True, False, False,
                                                                                  True, True, False]
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=3, img_size=32, num_frames=2, patch_size=16, embed_dim=16, depth=2,
                           num_heads=2)
    policy = InterpreterPolicy(16, 1, num_heads=2, head_dim=4, decision="expected_count")
    with torch.no_grad():
        policy.interpreters[0].query.weight.normal_()
    with torch.no_grad():
        out = PolicyModel(backbone, policy, num_groups=1).eval()(torch.randn(3, 3, 2, 32, 32), return_policy=True)
    assert out.keep[0].sum(1).tolist() == out.scores[0].sum(1).round().long().tolist()
    with pytest.raises(ValueError, match="decision"):
        InterpreterPolicy(4, 1, decision="top")


@pytest.mark.parametrize("init_score", [0.25, 0.5, 0.8])
def test_interpreter_starts_at_init_score_off_the_saddle(init_score: float) -> None:
    torch.manual_seed(0)
    interp = MultiHeadInterpreter(dim=8, num_heads=3, head_dim=4, init_score=init_score)
    # b_k = (1/2, 1/2, 1/2, 1/2) per head (unit length for head_dim 4), b_q = logit(p) * b_k: b_q . b_k = logit(p)
    torch.testing.assert_close(interp.key.bias, torch.full((12,), 0.5))
    torch.testing.assert_close(interp.query.bias, torch.full((12,), 0.5 * math.log(init_score / (1 - init_score))))
    with torch.no_grad():  # F_q(x) = b_q and F_k(P) = b_k
        interp.query.weight.zero_()
        interp.policy_token.zero_()
    assert interp(torch.randn(5, 8)).tolist() == pytest.approx([init_score] * 5, abs=1e-6)
    # off the bilinear saddle: the query map gets a gradient of the key bias' size, not of the 0.02 weights'
    interp.query.weight.requires_grad_(True)
    interp(torch.ones(1, 8)).sum().backward()
    assert interp.query.weight.grad is not None
    assert interp.query.weight.grad.abs().min().item() > 0.1 * init_score * (1 - init_score)
    with pytest.raises(ValueError, match="init_score"):
        MultiHeadInterpreter(dim=8, init_score=1.0)


def _count_block_inputs(model: PolicyModel) -> list[int]:
    counts: list[int] = []
    for block in model.backbone.blocks:
        block.norm1.register_forward_pre_hook(lambda _m, args: counts.append(args[0].shape[0]))
    return counts


def test_tokens_really_leave_the_sequence_and_hierarchy_holds() -> None:
    torch.manual_seed(1)
    model = tiny_tsf(groups=2)
    counts = _count_block_inputs(model)
    x = torch.randn(3, 3, 4, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
    num_patches = 4 * 4 * 4
    kept = [k.sum(1) for k in out.keep]
    assert kept[-1].sum() < 3 * num_patches, "threshold 0.5 on random weights should drop something"
    group_size = model.group_size
    for group in range(model.num_groups):
        expected = int(kept[group].sum()) + 3 * model.backbone.num_prefix_tokens
        assert counts[group * group_size:(group + 1) * group_size] == [expected] * group_size
    assert bool((out.keep[1] <= out.keep[0]).all()), "a token dropped at group 0 came back at group 1"
    assert bool((out.scores[1][~out.keep[0]] == 0).all()), "scores must be 0 for tokens dropped earlier"
    assert bool((out.keep[0] == (out.scores[0] >= 0.5)).all())


def test_batch_independence_with_different_keep_counts() -> None:
    torch.manual_seed(2)
    model = tiny_tsf(groups=2)
    x = torch.randn(4, 3, 4, 64, 64) * torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1, 1)
    with torch.no_grad():
        out = model(x, return_policy=True)
        singles = torch.cat([model(x[i:i + 1]) for i in range(4)])
    assert len(set(out.keep[-1].sum(1).tolist())) > 1, "samples should keep different numbers of tokens"
    torch.testing.assert_close(out.logits, singles, atol=1e-5, rtol=1e-5)


def test_block_diagonal_attention_matches_masked_dense() -> None:
    torch.manual_seed(3)
    lengths = [5, 2, 7]
    seqs = PackedSeqs.from_lengths(lengths, torch.device("cpu"))
    q, k, v = (torch.randn(sum(lengths), 2, 4) for _ in range(3))
    out = block_diagonal_sdpa(q, k, v, seqs)
    start = 0
    for n in lengths:
        sl = slice(start, start + n)
        ref = torch.softmax(q[sl].transpose(0, 1) @ k[sl].permute(1, 2, 0) / 2.0, -1) @ v[sl].transpose(0, 1)
        torch.testing.assert_close(out[sl], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)
        start += n


def test_log_prob_is_bernoulli_log_likelihood() -> None:
    torch.manual_seed(4)
    model = tiny_tsf(groups=1).train()
    x = torch.randn(2, 3, 4, 64, 64)
    out = model(x, return_policy=True, modes=["sample"])
    scores, keep = out.scores[0], out.keep[0]
    expected = torch.where(keep, scores, 1 - scores).log().sum(1)
    torch.testing.assert_close(out.log_probs[0], expected)
    out.log_probs[0].sum().backward()
    assert model.policy.interpreters[0].query.weight.grad is not None


@pytest.mark.parametrize("policy", ["drop_random", "drop_attention", "drop_temporal_diff"])
def test_fixed_ratio_policies_drop_exact_count_at_input(policy: str) -> None:
    torch.manual_seed(8)  # model, input and the random policy's scores all come from the global generator
    model = tiny_tsf(policy=policy, groups=2, **{"DROP.RATIO": "0.25"})
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
    assert out.keep[0].sum(1).tolist() == [48, 48]
    assert bool((out.keep[1] == out.keep[0]).all()), "fixed-ratio policies drop at the input only"
    if policy == "drop_random":  # the kept set is random across samples, and reproducible under a seed
        assert not torch.equal(out.keep[0][0], out.keep[0][1])
        torch.manual_seed(9)
        with torch.no_grad():
            first = model(x, return_policy=True).keep[0]
        torch.manual_seed(9)
        with torch.no_grad():
            assert torch.equal(model(x, return_policy=True).keep[0], first)


def test_attention_policy_scores_at_block_0_are_its_cls_attention() -> None:
    """By hand on ``blocks[0]`` (DROP.ATTENTION_BLOCK 0); the default, the paper's Block_1, is checked against
    timm's own modules in test_attention_block.py."""
    torch.manual_seed(5)
    model = tiny_tsf(policy="drop_attention", groups=1, **{"DROP.ATTENTION_BLOCK": "0"})
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
        emb = model.backbone.embed(x)
        block = model.backbone.blocks[0]
        tokens = block.norm1(torch.cat([emb.prefix, emb.patches], 1))[0]
        q, k, _ = block.attn.qkv(tokens).view(tokens.shape[0], 3, 4, 16).unbind(1)
        attn = torch.stack([torch.softmax(q[0, h] @ k[:, h].T / 4.0, -1) for h in range(4)]).mean(0)[1:]
    torch.testing.assert_close(out.scores[0][0], attn / attn.max())


def test_temporal_diff_scores_by_hand() -> None:
    model = tiny_tsf(policy="drop_temporal_diff", groups=1)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        out = model(x, return_policy=True)
        raw = model.backbone.patch_embed(x[0].transpose(0, 1))  # (T, hw, C)
    prev = torch.cat([torch.zeros_like(raw[:1]), raw[:-1]])
    dist = (raw - prev).norm(dim=-1).flatten()
    torch.testing.assert_close(out.scores[0][0], dist / dist.max())


@pytest.mark.parametrize("shape, message", [
    ((1, 4, 4, 64, 64), "channels"),
    ((1, 3, 4, 60, 64), "not divisible by the patch size"),
    ((1, 3, 64, 64), "5-d input"),
])
def test_wrong_input_shape_gives_clear_error(shape: tuple, message: str) -> None:
    model = tiny_tsf(groups=1)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_other_resolution_and_frame_count_interpolate_embeddings() -> None:
    model = tiny_tsf(groups=1, **{"METHOD.NAME": "dense"})
    with torch.no_grad():
        out = model(torch.randn(1, 3, 6, 96, 80), return_policy=True)
    assert out.grid == (6, 6, 5)
    assert out.keep[0].shape == (1, 6 * 6 * 5)


def test_modes_are_validated() -> None:
    model = tiny_tsf(groups=2)
    with pytest.raises(ValueError, match="modes"):
        model(torch.randn(1, 3, 4, 64, 64), modes=["greedy"])
    with pytest.raises(ValueError, match="modes"):
        model(torch.randn(1, 3, 4, 64, 64), modes=["greedy", "bogus"])


def test_training_with_drop_path_is_per_sample() -> None:
    torch.manual_seed(6)
    model = tiny_tsf(groups=1, **{"MODEL.DROP_PATH_RATE": "0.5"}).train()
    logits = model(torch.randn(2, 3, 4, 64, 64))
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert model.backbone.blocks[-1].mlp.fc1.weight.grad is not None


def test_embedding_init_std_comes_from_the_config() -> None:
    torch.manual_seed(0)
    default = tiny_tsf("dense", 1).backbone
    assert not default.time_embed.any(), "TimeSformer's default temporal embedding starts at zeros"
    assert 0.015 < default.pos_embed.std().item() < 0.025
    scratch = tiny_tsf("dense", 1, **{"MODEL.POS_EMBED_INIT_STD": "1.0", "MODEL.TIME_EMBED_INIT_STD": "0.5"}).backbone
    assert 0.8 < scratch.pos_embed.std().item() < 1.1  # trunc_normal_ cuts at +-2: std 0.88 for unit std
    assert 0.4 < scratch.time_embed.std().item() < 0.6
    image = build_model(load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_tiny_patch16_224",
                                           "MODEL.NUM_CLASSES", "3", "DATA.TRAIN_CROP_SIZE", "96",
                                           "METHOD.NAME", "dense", "MODEL.POS_EMBED_INIT_STD", "1.0"]))
    assert 0.8 < image.backbone.pos_embed.std().item() < 1.1
