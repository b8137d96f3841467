"""The Python API (iared_video.api) against timm's own forward, and every ```python block of the README run."""

from __future__ import annotations

import os
import re

import pytest
import timm
import torch

import iared_video.api as iv
from iared_video.config import ConfigError
from iared_video.methods import build_model, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()


@pytest.mark.parametrize(("method", "settings"), [("tome", {"r": 0}), ("evit", {"keep_rate": 1.0}),
                                                  ("dense", {})])
def test_wrapped_vit_that_reduces_nothing_is_timms_forward(method, settings):
    vit, x = _vit(), torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = vit(x)
        got = iv.wrap_vit(vit, method, **settings)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_wrapped_vit_reduces_as_the_configured_method_does():
    """``wrap_vit(vit, "tome", r=8)`` is the model ``METHOD.NAME tome`` builds for that arch, on the same weights."""
    vit = _vit()
    model = iv.wrap_vit(vit, "tome", r=8)
    assert model.backbone.blocks[0].attn.qkv.weight is vit.blocks[0].attn.qkv.weight  # no copy
    cfg = load_config(None, ["METHOD.NAME", "tome", "TOME.R", "8", "MODEL.MODEL_NAME", "deit", "MODEL.ARCH",
                             "vit_tiny_patch16_224", "MODEL.NUM_CLASSES", "10", "DATA.TRAIN_CROP_SIZE", "224",
                             "DATA.TEST_CROP_SIZE", "224"])
    reference = build_model(cfg).eval()
    reference.backbone.load_state_dict(vit.state_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want, dense = model(x), reference(x), vit(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, dense, atol=1e-3)  # 8 tokens merged in each of 12 blocks change the output
    with pytest.raises(ConfigError, match="nearest valid keys: TOME.R"):
        iv.wrap_vit(vit, "tome", rr=8)
    with pytest.raises(ConfigError, match="unknown method"):
        iv.wrap_vit(vit, "tomee")


def test_create_model_and_explain_map_the_keep_masks_to_pixels():
    model = iv.create_model("Synthetic/tsf_tiny_iared", options={"MODEL.PRETRAINED": ""})
    assert not model.training
    clip = torch.randn(2, 3, 8, 96, 96, generator=torch.Generator().manual_seed(0))
    exp = iv.explain(model, clip)
    assert exp.logits.shape == (2, 8) and exp.heatmaps.shape == exp.masks.shape == (2, 1, 8, 96, 96)
    # token n = t * (h * w) + y * w + x paints pixels [16y, 16y + 16) x [16x, 16x + 16) of frame t
    keep = exp.keep[0].view(2, 8, 6, 6)
    assert torch.equal(exp.masks[:, 0, :, ::16, ::16], keep)
    assert torch.equal(exp.heatmaps[:, 0, :, 15::16, 15::16], exp.scores[0].view(2, 8, 6, 6))
    torch.testing.assert_close(exp.keep_ratio, exp.keep[0].float().mean(1))
    with pytest.raises(ConfigError, match="no config named 'Synthetic/tsf_tiny_iaredd'; nearest"):
        iv.get_config("Synthetic/tsf_tiny_iaredd")


def test_every_python_block_of_the_readme_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "the README shows the Python API"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
