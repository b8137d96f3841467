"""DynamicViT: masked softmax, training losses and gradients, real removal at inference, Gumbel interpreter."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from iared_video.config import ConfigError
from iared_video.engine.distributed import DistInfo
from iared_video.engine.trainer import _start_stage
from iared_video.methods import get_method, load_config, model_gmacs_per_sample, stages_of
from iared_video.methods.dynamicvit import dynamicvit_step
from iared_video.methods.dynamicvit.losses import LossWeights, dynamicvit_loss, ratio_loss, token_distill_loss
from iared_video.methods.dynamicvit.method import prune_locations
from iared_video.methods.dynamicvit.model import DynamicViT, DynamicViTOutput, keep_count, make_teacher, masked_block
from iared_video.methods.gumbel import (
    GumbelIARED,
    GumbelInterpreterPolicy,
    GumbelOptions,
    GumbelOutput,
    gumbel_bernoulli,
    gumbel_loss,
    gumbel_step,
)
from iared_video.methods.stages import StagePlan, eval_modes, train_modes
from iared_video.models.backbones import TimeSformer
from iared_video.models.flops import fvcore_gflops
from iared_video.models.optim import cosine_warmup_lr
from iared_video.models.token_ops import masked_softmax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _backbone(seed: int = 0) -> TimeSformer:
    torch.manual_seed(seed)
    return TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=4, num_heads=4)


def _clip(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


def test_masked_softmax_is_softmax_over_kept_keys_and_self() -> None:
    logits = torch.tensor([[[[1.0, 2.0, 3.0, 0.5],
                             [0.1, -1.0, 2.0, 1.0],
                             [3.0, 0.0, 1.0, 2.0],
                             [0.0, 0.5, 1.5, -0.5]]]])
    keep = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # keys 1 and 3 dropped
    probs = masked_softmax(logits, keep)
    for row in range(4):
        allowed = [j for j in range(4) if keep[0, j] or j == row]
        expected = torch.zeros(4)
        expected[allowed] = logits[0, 0, row, allowed].softmax(-1)
        torch.testing.assert_close(probs[0, 0, row], expected, atol=1e-5, rtol=1e-5)
    # large logits stay finite (row max subtracted)
    assert torch.isfinite(masked_softmax(logits * 1e4, keep)).all()


def test_masked_block_with_everything_kept_is_the_timm_block() -> None:
    block = _backbone().blocks[0].eval()
    x = torch.randn(2, 7, 64)
    torch.testing.assert_close(masked_block(block, x, torch.ones(2, 7)), block(x), atol=1e-5, rtol=1e-5)


def test_inference_keeps_the_configured_count_per_stage() -> None:
    model = DynamicViT(_backbone(), [1, 2, 3], keep_rate=0.7).eval()
    seen: list[int] = []
    hooks = [b.norm1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0])) for b in model.backbone.blocks]
    x = _clip(3)
    with torch.no_grad():
        out = model(x, return_policy=True)
    for h in hooks:
        h.remove()
    num = 64  # 4 frames x 4 x 4 patches
    want = [num] + [math.floor(0.7 ** s * num + 1e-9) for s in (1, 2, 3)]  # official int(N * rho^s)
    assert want == [64, 44, 31, 21] and [keep_count(0.7, s, num) for s in (1, 2, 3)] == want[1:]
    assert [n // 3 - 1 for n in seen] == want  # packed tokens per sample minus the class token
    assert [k.sum(1).tolist() for k in out.keep] == [[n] * 3 for n in want]
    for s in range(1, 4):  # scores are 0 where dropped earlier, and kept tokens were present before
        assert (out.scores[s][~out.keep[s - 1]] == 0).all() and not (out.keep[s] & ~out.keep[s - 1]).any()
    with torch.no_grad():  # batch composition does not matter
        torch.testing.assert_close(model(x[1:2]), out.logits[1:2], atol=1e-5, rtol=1e-4)


def _masked_inference(model: DynamicViT, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Inference the training way: every token stays, dropped keys are masked out of attention, and stage s keeps
    the top ``floor(rho^s N)`` of the tokens still kept by the predictor's keep probability."""
    emb = model.backbone.embed(x)
    prefix, (batch, num, _) = emb.prefix.shape[1], emb.patches.shape
    tokens, mask, keeps = torch.cat([emb.prefix, emb.patches], dim=1), torch.ones(batch, num), []
    for group in range(model.num_groups):
        if group:
            keep_prob = model.policy.predictors[group - 1](tokens[:, prefix:], mask)[..., 0].exp()
            top = keep_prob.masked_fill(mask == 0, -1.0).topk(keep_count(model.policy.keep_rate, group, num)).indices
            mask = torch.zeros_like(mask).scatter(1, top, 1.0)
        keeps.append(mask.bool())
        for block in model.group_blocks(group):
            tokens = masked_block(block, tokens, torch.cat([torch.ones(batch, prefix), mask], dim=1))
    return model.backbone.forward_head(tokens[:, :prefix]), keeps


def test_inference_removes_tokens_with_the_logits_of_masked_inference() -> None:
    """Eval-mode DynamicViT removes tokens (fewer enter the blocks) and gives the masked forward's logits: the
    masked softmax leaves dropped keys eps / L of weight, far below the tolerance."""
    model = DynamicViT(_backbone(), [1, 2, 3], keep_rate=0.7).eval()
    x = _clip(3)
    with torch.no_grad():
        removed = model(x, return_policy=True)
        masked, keeps = _masked_inference(model, x)
    assert [k.tolist() for k in removed.keep] == [k.tolist() for k in keeps]
    torch.testing.assert_close(removed.logits, masked, atol=1e-5, rtol=1e-4)


def test_loss_terms_match_hand_computed_values() -> None:
    masks = [torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]),
             torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])]
    rho = 0.5  # targets 0.5 and 0.25; stage 1: (0.75-0.5)^2, (0.25-0.5)^2; stage 2: (0.5-0.25)^2, (0-0.25)^2
    assert ratio_loss(masks, rho).item() == pytest.approx(0.0625)
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [9.0, 9.0]]])
    keep = torch.tensor([[1.0, 1.0, 0.0]])
    assert token_distill_loss(student, teacher, keep).item() == pytest.approx((1 + 1 + 4 + 0) / 4)
    logits, t_logits = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    out = DynamicViTOutput(logits=logits, masks=[keep], patch_tokens=student)
    weights = LossWeights(keep_rate=0.5, ratio=2.0, distill=0.5, token_distill=0.25)
    total, terms = dynamicvit_loss(out, torch.tensor([0]), t_logits, teacher, weights)
    p = torch.tensor([2.0, 0.0]).softmax(0)
    kl = (0.5 * (math.log(0.5) - p.log())).sum().item()  # KL(teacher || student)
    assert terms["ce"].item() == pytest.approx(-math.log(p[0].item()), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert terms["ratio"].item() == pytest.approx((2 / 3 - 0.5) ** 2, rel=1e-5)
    expected = terms["ce"] + 2.0 * terms["ratio"] + 0.5 * terms["kl"] + 0.25 * terms["token"]
    assert total.item() == pytest.approx(expected.item())


def test_training_loss_reaches_every_predictor() -> None:
    model = DynamicViT(_backbone(), [1, 2, 3], keep_rate=0.7).train()
    teacher = make_teacher(model.backbone)
    x, y = _clip(2), torch.tensor([0, 3])
    loss, stats = dynamicvit_step(model, teacher, x, y, LossWeights())
    loss.backward()
    assert torch.isfinite(loss) and {"ce", "ratio", "kl", "token", "keep_ratio"} <= set(stats)
    for predictor in model.policy.predictors:
        grads = [p.grad for p in predictor.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in teacher.parameters())
    out = model(x, return_policy=True)  # training output: all N tokens kept in the tensor, masks multiplied
    assert out.patch_tokens.shape == (2, 64, 64) and len(out.masks) == 3 and len(out.keep) == 4
    assert all(((b <= a) | ~b.bool()).all() for a, b in zip(out.masks, out.masks[1:]))


def test_flops_count_predictors_and_agree_with_fvcore() -> None:
    model = DynamicViT(_backbone(), [1, 2, 3], keep_rate=0.7).eval()
    x = _clip(1)
    with torch.no_grad():
        out = model(x, return_policy=True)
    analytic = float(model_gmacs_per_sample(model, out)[0])
    assert analytic == pytest.approx(fvcore_gflops(model, x), rel=1e-6)


def test_gumbel_interpreter_gets_gradients_through_cross_entropy() -> None:
    policy = GumbelInterpreterPolicy(64, 2, num_heads=2, head_dim=16)
    model = GumbelIARED(_backbone(), policy, num_groups=2).train()
    x, y = _clip(2), torch.tensor([1, 2])
    out = model(x, return_policy=True, modes=["sample", "sample"])
    F.cross_entropy(out.logits, y).backward()
    for interp in policy.interpreters:
        assert interp.query.weight.grad is not None and interp.query.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # greedy inference: threshold rule, gates unused
        greedy = model(x, return_policy=True)
    assert all(((s >= 0.5) | ~k).all() for s, k in zip(greedy.scores, greedy.keep))
    stages = get_method("iared_gumbel").stages(StagePlan(2, 3, 5, 1))
    assert [s.name for s in stages] == ["gumbel"] and train_modes(stages[0], 2) == ["sample"] * 2
    assert eval_modes(stages[0], 2) == ["greedy"] * 2


def test_gumbel_keep_ratio_term_by_hand() -> None:
    gates = [torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]),   # kept fractions 1, 0.5; target 0.5
             torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])]   # kept fractions 0.5, 0.25; target 0.25
    out = GumbelOutput(logits=torch.tensor([[2.0, 0.0], [0.0, 0.0]]), gates=gates)
    labels = torch.tensor([0, 1])
    total, terms = gumbel_loss(out, labels, keep_rate=0.5, ratio_weight=2.0)
    ratio = ((0.5 ** 2 + 0.0) / 2 + (0.25 ** 2 + 0.0) / 2) / 2  # mean over groups of the batch-mean squares
    ce = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    assert ratio == pytest.approx(0.078125)
    assert terms["ratio"].item() == pytest.approx(ratio) and terms["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(ce + 2.0 * ratio, rel=1e-6)
    assert gumbel_loss(out, labels, 0.5, 0.0)[0].item() == pytest.approx(ce, rel=1e-6)
    # keeping more than the target: descending the term lowers every score, through the straight-through gate
    scores = torch.full((2, 4), 0.9, requires_grad=True)
    torch.manual_seed(0)
    ratio_loss([gumbel_bernoulli(scores)], keep_rate=0.1).backward()
    assert (scores.grad > 0).all()


def test_gumbel_step_gates_match_keep_and_reach_every_interpreter() -> None:
    policy = GumbelInterpreterPolicy(64, 2, num_heads=2, head_dim=16)
    model = GumbelIARED(_backbone(), policy, num_groups=2).train()
    x, y = _clip(2), torch.tensor([1, 2])
    torch.manual_seed(0)
    out = model(x, return_policy=True, modes=["sample", "sample"])
    assert isinstance(out, GumbelOutput) and len(out.gates) == 2
    for gate, keep in zip(out.gates, out.keep):  # forward values: 1 where kept after the group, else 0
        torch.testing.assert_close(gate.detach(), keep.float())
    loss, stats = gumbel_step(model, x, y, ["sample", "sample"], GumbelOptions(keep_rate=0.5, ratio_weight=1.0))
    assert stats["loss"] == pytest.approx(stats["ce"] + stats["ratio"], rel=1e-5) and stats["ratio"] > 0
    model.zero_grad()
    ratio_loss(model(x, return_policy=True, modes=["sample", "sample"]).gates, 0.5).backward()  # the term alone
    for interp in policy.interpreters:
        assert interp.query.weight.grad is not None and interp.query.weight.grad.abs().sum() > 0


def _tiny_dynamicvit_cfg(*opts: str):
    return load_config(os.path.join(ROOT, "configs", "Synthetic", "tsf_tiny_dynamicvit.yaml"),
                       ["MODEL.EMBED_DIM", "64", "MODEL.NUM_HEADS", "4", "DATA.NUM_FRAMES", "4",
                        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", *opts])


def test_dynamicvit_backbone_lr_is_scaled_through_warmup_and_cosine() -> None:
    from iared_video.methods import build_model

    cfg = _tiny_dynamicvit_cfg("SOLVER.BASE_LR", "1e-3", "SOLVER.COSINE_END_LR", "1e-5", "SOLVER.MAX_EPOCH", "2",
                               "SOLVER.WARMUP_EPOCHS", "0.5", "DYNAMICVIT.BACKBONE_LR_SCALE", "0.01",
                               "DYNAMICVIT.BACKBONE_LR_RULE", "scaled", "DYNAMICVIT.BACKBONE_HOLD_EPOCHS", "0",
                               "DYNAMICVIT.FROZEN_PARAMS", "[]")
    model = build_model(cfg)
    run = _start_stage(cfg, model, stages_of(cfg)[0], 0, 0, 4, DistInfo(0, 1, 0), torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [[names[id(p)].startswith("policy.") for p in g["params"]] for g in run.optimizer.param_groups]
    assert all(len(set(g)) == 1 for g in groups), "a group mixes predictor and backbone parameters"
    predictor = [g[0] for g in groups]
    assert predictor[0] and not predictor[-1]  # predictor groups first: param_groups[0] has the logged lr
    assert sum(len(g) for g in groups) == len(names)  # every parameter, once
    for step in range(8):  # 2 warm-up steps, then cosine from 1e-3 to 1e-5 over 6 steps
        want = cosine_warmup_lr(step, 8, 1e-3, 1e-5, 2)
        for is_predictor, group in zip(predictor, run.optimizer.param_groups):
            assert group["lr"] == pytest.approx(want * (1.0 if is_predictor else 0.01), rel=1e-9)
        run.schedule.step()
    interp = _tiny_dynamicvit_cfg("METHOD.NAME", "iared_gumbel", "SOLVER.BASE_LR", "1e-3")
    plain = _start_stage(interp, build_model(interp), stages_of(interp)[0], 0, 0, 4, DistInfo(0, 1, 0),
                         torch.device("cpu"))
    assert {g["lr"] for g in plain.optimizer.param_groups} == {1e-3}  # other policies: one lr


def test_config_builds_dynamicvit_and_rejects_bad_locations() -> None:
    from iared_video.methods import build_model

    cfg = _tiny_dynamicvit_cfg()  # 6 blocks, the default locations: floor(6/4), 6/2, floor(18/4)
    model = build_model(cfg)
    assert isinstance(model, DynamicViT) and model.prune_locations == [1, 3, 4] and model.num_groups == 4
    model = build_model(_tiny_dynamicvit_cfg("DYNAMICVIT.PRUNE_LOCATIONS", "[1, 2]"))  # an explicit list
    assert model.prune_locations == [1, 2] and model.num_groups == 3
    with pytest.raises(ConfigError, match="PRUNE_LOCATIONS"):
        load_config(None, ["METHOD.NAME", "dynamicvit", "DYNAMICVIT.PRUNE_LOCATIONS", "[6, 3]"])
    with pytest.raises(ConfigError, match="IARED.GUMBEL True is now METHOD.NAME iared_gumbel"):
        load_config(None, ["METHOD.NAME", "drop_random", "IARED.GUMBEL", "True"])



def test_default_locations_are_quarters_of_the_depth_by_hand() -> None:
    """floor(k depth / 4), k = 1, 2, 3, never block 0 (a predictor needs a block before it):
    12 blocks -> 3, 6, 9 (the paper's); 6 -> 1 (1.5), 3, 4 (4.5); 4 -> 1, 2, 3; 2 -> 1 (0 and the repeated 1 left
    out); 1 -> none, which validation rejects."""
    assert [prune_locations(_tiny_dynamicvit_cfg(), depth) for depth in (12, 6, 4, 2, 1)] == [
        [3, 6, 9], [1, 3, 4], [1, 2, 3], [1], []]
    with pytest.raises(ConfigError, match="PRUNE_LOCATIONS"):
        _tiny_dynamicvit_cfg("MODEL.DEPTH", "1")
    from iared_video.methods import build_model

    deit_s = load_config(os.path.join(ROOT, "configs", "IN1k", "deit_s.yaml"),
                         ["METHOD.NAME", "dynamicvit", "MODEL.PRETRAINED", ""])
    assert build_model(deit_s).prune_locations == [3, 6, 9]


def test_keep_count_is_floor_worked_by_hand() -> None:
    """floor(rho^s N): DeiT-S 196 -> 137, 96, 67 (0.7 x 196 = 137.2, 0.49 x 196 = 96.04, 0.343 x 196 = 67.228);
    TimeSformer 8x224, 1568 -> 1097, 768, 537 (1097.6, 768.32, 537.824); 0.49 x 100 = 49 despite 0.7**2 * 100 <
    49 in floating point."""
    assert [keep_count(0.7, s, 196) for s in (1, 2, 3)] == [137, 96, 67]
    assert [keep_count(0.7, s, 1568) for s in (1, 2, 3)] == [1097, 768, 537]
    assert 0.7 ** 2 * 100 < 49 and keep_count(0.7, 2, 100) == 49
    assert keep_count(0.1, 3, 10) == 1  # floor(0.01) = 0, but a stage keeps at least one token


def test_masked_softmax_official_epsilon_by_hand_and_float32() -> None:
    logits = torch.zeros(1, 1, 4, 4)
    keep = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    eps = 0.4  # large enough to see: (w + eps / L) / (sum(w) + eps), L = 4
    probs = masked_softmax(logits, keep, eps=eps)
    # row 0 sees keys 0 and 2 (w = 1, 0, 1, 0): (1 + 0.1) / 2.4 and 0.1 / 2.4; row 1 also sees itself (w = 1, 1, 1, 0)
    torch.testing.assert_close(probs[0, 0, 0], torch.tensor([1.1, 0.1, 1.1, 0.1]) / 2.4)
    torch.testing.assert_close(probs[0, 0, 1], torch.tensor([1.1, 1.1, 1.1, 0.1]) / 3.4)
    low = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(0)).mul(8).to(torch.bfloat16)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0]])
    out = masked_softmax(low, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, masked_softmax(low.float(), mask).to(torch.bfloat16), atol=0, rtol=0)


def test_dynamicvit_recipe_freezes_embeddings_and_holds_then_caps_the_backbone_lr() -> None:
    """Official recipe: cls_token / pos_embed (/ time_embed) frozen; backbone lr 0 for the hold, then
    min(0.01 x base, predictor lr); the predictors follow the plain schedule from the first step."""
    from iared_video.methods import build_model

    cfg = _tiny_dynamicvit_cfg("SOLVER.BASE_LR", "1e-3", "SOLVER.COSINE_END_LR", "0.0", "SOLVER.MAX_EPOCH", "3",
                               "SOLVER.WARMUP_EPOCHS", "0", "DYNAMICVIT.BACKBONE_HOLD_EPOCHS", "1",
                               "DYNAMICVIT.BACKBONE_LR_SCALE", "0.5")  # a cap of 5e-4 that the cosine crosses
    assert cfg.DYNAMICVIT.BACKBONE_LR_RULE == "capped"
    assert list(cfg.DYNAMICVIT.FROZEN_PARAMS) == ["cls_token", "pos_embed", "time_embed"]
    model = build_model(cfg)
    steps = 4
    run = _start_stage(cfg, model, stages_of(cfg)[0], 0, 0, steps, DistInfo(0, 1, 0), torch.device("cpu"))
    optimised = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    for name in ("backbone.cls_token", "backbone.pos_embed", "backbone.time_embed"):
        param = dict(model.named_parameters())[name]
        assert not param.requires_grad and id(param) not in optimised, name
    labels = [g["label"] for g in run.optimizer.param_groups]
    assert set(labels) == {"predictor", "backbone"}
    total, cap, seen = 3 * steps, 0.5 * 1e-3, set()
    for step in range(total):
        plain = cosine_warmup_lr(step, total, 1e-3, 0.0, 0)
        backbone = 0.0 if step < steps else min(cap, plain)  # hold: the first epoch (4 steps)
        seen.add("hold" if step < steps else "cap" if plain > cap else "cosine")
        for label, group in zip(labels, run.optimizer.param_groups):
            want = plain if label == "predictor" else backbone
            assert group["lr"] == pytest.approx(want, abs=1e-15), (step, label)
        run.schedule.step()
    assert seen == {"hold", "cap", "cosine"}
