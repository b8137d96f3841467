"""oneDNN linear layers: same outputs as nn.Linear, same parameters, plain path wherever gradients are needed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iared_video.engine.benchmark import BenchSettings, run_benchmark
from iared_video.methods import build_model, load_config
from iared_video.methods.iared import ControlledKeepPolicy
from iared_video.models.onednn import OneDNNLinear, onednn_available, use_onednn_linears
from iared_video.models.policy_model import PolicyModel

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")

TINY = ["MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "MODEL.NUM_CLASSES", "5",
        "IARED.NUM_GROUPS", "2", "IARED.INTERPRETER_DIM", "8"]


def test_conversion_shares_parameters_and_state_dict() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4, bias=False))
    keys = {k: v.data_ptr() for k, v in model.state_dict().items()}
    assert use_onednn_linears(model) == 2 and isinstance(model[2], OneDNNLinear)
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == keys


def test_outputs_match_and_follow_in_place_weight_updates() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(24, 40)
    fast = OneDNNLinear.from_linear(nn.Linear(24, 40))
    fast.load_state_dict(ref.state_dict())  # an in-place copy after the first pack must be seen
    x = torch.randn(3, 7, 24)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
        fast.weight.mul_(2.0)
        ref.weight.mul_(2.0)
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)


def test_training_forward_uses_the_differentiable_path() -> None:
    fast = OneDNNLinear.from_linear(nn.Linear(6, 3))
    fast(torch.randn(4, 6)).sum().backward()
    assert fast.weight.grad is not None and fast.weight.grad.shape == (3, 6)


def test_iared_model_logits_match_with_mixed_keep_counts() -> None:
    torch.manual_seed(0)
    dense = build_model(load_config(None, TINY + ["METHOD.NAME", "iared"])).eval()
    policy = ControlledKeepPolicy(dense.policy)
    policy.set_ratios(torch.tensor([0.3, 0.6, 0.9]))
    model = PolicyModel(dense.backbone, policy, dense.num_groups).eval()
    x = torch.randn(3, 3, 2, 32, 32)
    with torch.inference_mode():
        ref = model(x, return_policy=True)
        use_onednn_linears(model)
        out = model(x, return_policy=True)
    assert ref.keep_ratio.unique().numel() > 1  # samples keep different numbers of tokens
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-5)


def test_benchmark_onednn_rows_and_refusals() -> None:
    cfg = load_config(None, TINY)
    settings = BenchSettings(batch_sizes=[2], warmup=0, iters=1, keep_ratios=[0.5], methods_at_keep=[],
                             cpu_linear="onednn")
    rows = run_benchmark(cfg, settings, "cpu").rows
    assert [r["variant"] for r in rows][-1] == "dense (aten linear)" and rows[0]["speedup"] == 1.0
    assert all(r["peak_mem_mb"] > 0 for r in rows)  # oneDNN outputs are opaque tensors: counted per tensor
    with pytest.raises(ValueError, match="fp32 on CPU"):
        run_benchmark(cfg, BenchSettings(precisions=["bf16"], cpu_linear="onednn"), "cpu")
    with pytest.raises(ValueError, match="'aten' or 'onednn'"):
        run_benchmark(cfg, BenchSettings(cpu_linear="mkl"), "cpu")
