"""Attribution baselines: the explicit dense forward matches the model, maps live on the patch grid."""

import pytest
import torch

from iared_video.interpret.baselines import BASELINES, dense_forward, grad_weighted_rollout, rollout
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models.backbones import TimeSformer, TimmViT
from iared_video.models.policy_model import PolicyModel


def _video_model():
    torch.manual_seed(0)
    backbone = TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2, num_heads=2)
    return PolicyModel(backbone, InterpreterPolicy(64, 1), 1).eval(), torch.randn(2, 3, 4, 32, 48)


def _image_model():
    torch.manual_seed(0)
    backbone = TimmViT("test_vit", num_classes=5, img_size=32)
    return PolicyModel(backbone, InterpreterPolicy(64, 2), 2).eval(), torch.randn(2, 3, 32, 48)


@pytest.mark.parametrize("make", [_video_model, _image_model])
def test_dense_forward_reproduces_dense_logits(make):
    model, x = make()
    with torch.no_grad():
        dense = model(x, modes=["keep_all"] * model.num_groups)
        trace = dense_forward(model.backbone, x)
    torch.testing.assert_close(trace.logits, dense, atol=1e-5, rtol=1e-4)
    tokens = trace.num_prefix + x.shape[-2] // 16 * x.shape[-1] // 16 * (x.shape[2] if x.ndim == 5 else 1)
    assert len(trace.attentions) == len(model.backbone.blocks)
    assert trace.attentions[0].shape[-2:] == (tokens, tokens)
    torch.testing.assert_close(trace.attentions[0].sum(-1), torch.ones(trace.attentions[0].shape[:-1]))


@pytest.mark.parametrize("make", [_video_model, _image_model])
def test_every_baseline_gives_patch_grid_scores(make):
    model, x = make()
    n = x.shape[-2] // 16 * x.shape[-1] // 16 * (x.shape[2] if x.ndim == 5 else 1)
    for name, method in BASELINES.items():
        scores = method(model.backbone, x)
        assert scores.shape == (2, n), name
        assert torch.isfinite(scores).all() and not scores.requires_grad, name
    fixed = BASELINES["grad_attention"](model.backbone, x, torch.tensor([1, 2]))
    assert fixed.shape == (2, n)


def test_rollout_and_relevance_by_hand():
    length = 3  # 1 class token + 2 patches
    uniform = torch.full((1, 2, length, length), 1 / length)
    # one block: 0.5 * 1/3 + 0.5 * I -> class row [2/3, 1/6, 1/6]
    torch.testing.assert_close(rollout([uniform], 1), torch.tensor([[1 / 6, 1 / 6]]))
    identity = torch.eye(length).expand(1, 2, length, length)
    torch.testing.assert_close(rollout([identity, identity], 1), torch.zeros(1, 2))
    grads = torch.ones_like(uniform)
    grads[:, :, 0, 2] = -1.0  # negative evidence is clipped
    # R = I + mean_h((g*A)^+) -> class row over patches [1/3, 0]
    torch.testing.assert_close(grad_weighted_rollout([uniform], [grads], 1), torch.tensor([[1 / 3, 0.0]]))


def test_gradcam_matches_manual_cam_in_token_order():
    """GradCAM's (T*h, w) map flattened back equals relu(sum_c mean_n(dy/dA) A) in token order n = t*h*w + y*w + x."""
    model, x = _video_model()
    x = x[:1]
    scores = BASELINES["gradcam"](model.backbone, x, torch.tensor([3]))
    saved = {}
    handle = model.backbone.blocks[-1].norm1.register_forward_hook(lambda m, i, o: saved.update(a=o))
    logits = dense_forward(model.backbone, x).logits
    handle.remove()
    grad, = torch.autograd.grad(logits[0, 3], saved["a"])
    act, grad = saved["a"][:, 1:], grad[:, 1:]
    cam = (act * grad.mean(dim=1, keepdim=True)).sum(-1).clamp_min(0).detach()
    cam = cam - cam.min()
    cam = cam / (cam.max() + 1e-7)
    assert scores.shape == (1, 4 * 2 * 3)
    torch.testing.assert_close(scores.float(), cam, atol=1e-4, rtol=1e-3)
