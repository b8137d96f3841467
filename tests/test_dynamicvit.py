"""DynamicViT: masked softmax, training losses and gradients, real removal at inference, Gumbel interpreter."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from iared_video.config import ConfigError, load_config
from iared_video.engine.curriculum import build_stages, eval_modes, train_modes
from iared_video.engine.trainer import StepArgs, dynamicvit_step
from iared_video.models.backbones import TimeSformer
from iared_video.models.dynamicvit import (DynamicViT, DynamicViTOutput, GumbelIARED, GumbelInterpreterPolicy,
                                           LossWeights, dynamicvit_loss, keep_count, make_teacher, masked_block,
                                           masked_softmax, ratio_loss, token_distill_loss)
from iared_video.models.flops import fvcore_gflops, model_gmacs_per_sample

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
    want = [num] + [math.ceil(0.7 ** s * num - 1e-9) for s in (1, 2, 3)]
    assert want == [64, 45, 32, 22] and [keep_count(0.7, s, num) for s in (1, 2, 3)] == want[1:]
    assert [n // 3 - 1 for n in seen] == want  # packed tokens per sample minus the class token
    assert [k.sum(1).tolist() for k in out.keep] == [[n] * 3 for n in want]
    for s in range(1, 4):  # scores are 0 where dropped earlier, and kept tokens were present before
        assert (out.scores[s][~out.keep[s - 1]] == 0).all() and not (out.keep[s] & ~out.keep[s - 1]).any()
    with torch.no_grad():  # batch composition does not matter
        torch.testing.assert_close(model(x[1:2]), out.logits[1:2], atol=1e-5, rtol=1e-4)


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
    loss, stats = dynamicvit_step(model, teacher, x, y, StepArgs(dynamicvit=LossWeights()))
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
    stages = build_stages("interpreter", 2, 3, 5, 1, gumbel=True)
    assert [s.name for s in stages] == ["gumbel"] and train_modes(stages[0], 2) == ["sample"] * 2
    assert eval_modes(stages[0], 2) == ["greedy"] * 2


def test_config_builds_dynamicvit_and_rejects_bad_locations() -> None:
    from iared_video.models import build_model

    cfg = load_config(os.path.join(ROOT, "configs", "Synthetic", "tsf_tiny_dynamicvit.yaml"),
                      ["MODEL.EMBED_DIM", "64", "MODEL.NUM_HEADS", "4", "DATA.NUM_FRAMES", "4",
                       "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"])
    model = build_model(cfg)
    assert isinstance(model, DynamicViT) and model.prune_locations == [1, 2, 3] and model.num_groups == 4
    with pytest.raises(ConfigError, match="PRUNE_LOCATIONS"):
        load_config(None, ["IARED.POLICY", "dynamicvit", "DYNAMICVIT.PRUNE_LOCATIONS", "[6, 3]"])
    with pytest.raises(ConfigError, match="GUMBEL"):
        load_config(None, ["IARED.POLICY", "random", "IARED.GUMBEL", "True"])


def test_head_to_head_pieces(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("head_to_head", os.path.join(ROOT, "tools", "head_to_head.py"))
    h2h = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(h2h)
    opts = h2h.epoch_opts(None, quick=True)
    assert opts[:2] == ["SOLVER.MAX_EPOCH", "1"]
    cfg = h2h.method_cfg("dynamicvit", "video", str(tmp_path), opts, "dense.pyth")
    assert cfg.IARED.POLICY == "dynamicvit" and cfg.SOLVER.MAX_EPOCH == 1
    assert h2h.method_cfg("attention", "image", str(tmp_path), opts, "d.pyth", 0.3).IARED.DROP_RATIO == 0.3
    rows = [{"kind": "video", "method": m, "accuracy": a, "gmacs": g, "throughput": t}
            for m, a, g, t in (("dense", 90.0, 1.0, 10.0), ("dynamicvit", 88.0, 0.6, 15.0))]
    h2h.write_outputs(rows, str(tmp_path))
    assert (tmp_path / "head_to_head.json").is_file() and (tmp_path / "video_pareto_gmacs.png").is_file()
