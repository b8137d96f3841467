"""The paper's settings in the configs (tau, Table 4's interpreter-only study), the weights keys, the reward
normaliser inside the REINFORCE step, and the tau sweep of tools/sweep_threshold.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from iared_video.config import ConfigError
from iared_video.engine.trainer import build_initial_model
from iared_video.experiments import sweep_threshold
from iared_video.methods import build_model, load_config, stages_of
from iared_video.methods.iared import RewardOptions, reinforce_step
from iared_video.methods.iared.reinforce import reward

ROOT = Path(__file__).resolve().parents[1]
HEADLINE_TAU = 1.5  # Table 8, DeiT-S: 79.1% top-1 at 3.4 GFLOPs (0.5: 76.0% at 2.5)
TINY = ["MODEL.NUM_CLASSES", "3", "MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "2",
        "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "IARED.NUM_GROUPS", "2",
        "IARED.INTERPRETER_HEADS", "2", "IARED.INTERPRETER_DIM", "8"]


@pytest.mark.parametrize("name", ["IN1k/deit_s", "IN1k/deit_b", "IN1k/deit_b_384", "K400/iared_tsf"])
def test_paper_configs_use_the_headline_tau_and_start_from_a_dense_model(name: str) -> None:
    cfg = load_config(str(ROOT / "configs" / f"{name}.yaml"))
    assert cfg.IARED.TAU == HEADLINE_TAU and cfg.DROP.ATTENTION_BLOCK == 1
    assert cfg.TRAIN.CHECKPOINT_FILE_PATH and not cfg.MODEL.PRETRAINED


def test_resolution_study_trains_the_interpreters_only() -> None:
    cfg = load_config(str(ROOT / "configs" / "IN1k" / "deit_b_384.yaml"))
    assert cfg.DATA.TRAIN_CROP_SIZE == 384 and "384" in cfg.TRAIN.CHECKPOINT_FILE_PATH
    assert [s.name for s in stages_of(cfg)] == ["interpreter_g1", "interpreter_g2", "interpreter_g3"]


def test_reinforce_step_divides_by_the_chosen_normalizer() -> None:
    """Group 2 of 2: the step's mean reward is ``reward`` with N or with the tokens entering group 2."""
    torch.manual_seed(0)
    model = build_model(load_config(None, [*TINY, "IARED.THRESHOLD", "0.5"])).eval()
    x, y = torch.randn(3, 3, 2, 32, 32), torch.tensor([0, 1, 2])
    modes = ["greedy", "sample"]
    for normalizer in ("original", "entering"):
        torch.manual_seed(1)
        _, stats = reinforce_step(model, model, x, y, modes, 1, RewardOptions(tau=0.5, reward_normalizer=normalizer))
        torch.manual_seed(1)
        with torch.no_grad():
            out = model(x, return_policy=True, modes=modes)
        entering = out.keep[0].sum(1).float()
        denominator = entering if normalizer == "entering" else torch.full_like(entering, out.keep[1].shape[1])
        want = reward(out.keep[1].sum(1), denominator, out.logits.argmax(1) == y, 0.5)
        assert stats["reward"] == pytest.approx(want.mean().item(), abs=1e-6), normalizer
        assert entering.lt(out.keep[1].shape[1]).any()  # group 1 dropped something: the two options differ


def test_reinforce_step_with_the_probability_outcome() -> None:
    """REWARD_OUTCOME probability: the step's mean reward is p * efficiency - (1 - p) * tau, p the label's softmax."""
    torch.manual_seed(0)
    model = build_model(load_config(None, [*TINY, "IARED.FIRST_DROP_GROUP", "1"])).eval()
    x, y = torch.randn(3, 3, 2, 32, 32), torch.tensor([0, 1, 2])
    modes = ["sample", "keep_all"]
    torch.manual_seed(1)
    _, stats = reinforce_step(model, model, x, y, modes, 0, RewardOptions(tau=1.5, reward_outcome="probability"))
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x, return_policy=True, modes=modes)
    p = out.logits.softmax(1)[torch.arange(3), y]
    ratio = out.keep[0].sum(1).float() / out.keep[0].shape[1]
    assert stats["reward"] == pytest.approx((p * (1 - ratio ** 2) - (1 - p) * 1.5).mean().item(), abs=1e-6)


def test_reinforce_step_with_several_samples_and_the_leave_one_out_baseline() -> None:
    """K = 3 samples of each of 2 inputs (input-major): the loss is -mean(A * log p) over the 6 rows, with A each
    row's reward minus the mean of its input's other two, all recomputed here from one replayed forward."""
    torch.manual_seed(0)
    model = build_model(load_config(None, [*TINY, "IARED.FIRST_DROP_GROUP", "1"])).eval()
    x, y = torch.randn(2, 3, 2, 32, 32), torch.tensor([0, 2])
    modes = ["sample", "keep_all"]
    args = RewardOptions(tau=0.5, reinforce_samples=3, reinforce_baseline="leave_one_out")
    torch.manual_seed(1)
    loss, stats = reinforce_step(model, model, x, y, modes, 0, args)
    torch.manual_seed(1)
    xs, ys = torch.stack([x[0]] * 3 + [x[1]] * 3), torch.tensor([0, 0, 0, 2, 2, 2])
    out = model(xs, return_policy=True, modes=modes)
    r = reward(out.keep[0].sum(1), out.keep[0].shape[1], out.logits.argmax(1) == ys, 0.5).view(2, 3)
    advantage = r - (r.sum(1, keepdim=True) - r) / 2
    assert loss.item() == pytest.approx(-(advantage.flatten() * out.log_probs[0]).mean().item(), abs=1e-5)
    assert stats["reward"] == pytest.approx(r.mean().item(), abs=1e-6) and "greedy_reward" not in stats
    assert out.keep[0].sum(1).unique().numel() > 1  # the three samples of an input really differ


def test_leave_one_out_needs_two_samples() -> None:
    with pytest.raises(ConfigError, match="REINFORCE_SAMPLES >= 2"):
        load_config(None, ["IARED.REINFORCE_BASELINE", "leave_one_out"])


def test_checkpoint_file_path_is_the_start_and_overwrites_pretrained(tmp_path: Path, caplog) -> None:
    cfg = load_config(None, TINY)
    torch.manual_seed(5)
    dense = build_model(cfg)
    start, initial = tmp_path / "dense.pyth", tmp_path / "initial.pyth"
    torch.save({"model_state": dense.state_dict()}, start)
    torch.save({"model_state": build_model(cfg).state_dict()}, initial)
    both = load_config(None, [*TINY, "MODEL.PRETRAINED", str(initial), "TRAIN.CHECKPOINT_FILE_PATH", str(start)])
    with caplog.at_level(logging.WARNING):
        model = build_initial_model(both, torch.device("cpu"))
    assert "overwritten by TRAIN.CHECKPOINT_FILE_PATH" in caplog.text
    torch.testing.assert_close(model.backbone.pos_embed, dense.backbone.pos_embed)
    missing = load_config(None, [*TINY, "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "none.pyth")])
    with pytest.raises(FileNotFoundError, match=r"TRAIN.CHECKPOINT_FILE_PATH .* \(the dense model training"):
        build_initial_model(missing, torch.device("cpu"))


def test_sweep_threshold_sweeps_one_trained_model_per_tau(tmp_path: Path) -> None:
    paths = []
    for seed, tau in ((0, 0.5), (1, 1.5)):
        cfg = load_config(None, [*TINY, "IARED.TAU", str(tau)])
        torch.manual_seed(seed)
        paths.append(tmp_path / f"tau{tau}.pyth")
        torch.save({"model_state": build_model(cfg).state_dict(), "cfg": cfg.dump()}, paths[-1])
    tool = sweep_threshold
    assert tool.checkpoint_tau(str(paths[1])) == 1.5
    out = tmp_path / "sweep"
    rows = tool.main(["--batch-size", "2", "--num-batches", "1", "--iters", "1", "--checkpoints", *map(str, paths),
                      "--thresholds", "0.4", "0.6", "--out-dir", str(out), *TINY])
    iared = [(r["method"], r["tau"], r["threshold"]) for r in rows if r["method"] != "dense"]
    assert iared == [("iared@tau=0.5", 0.5, 0.4), ("iared@tau=0.5", 0.5, 0.6),
                     ("iared@tau=1.5", 1.5, 0.4), ("iared@tau=1.5", 1.5, 0.6)]
    assert [r["tau"] for r in rows if r["method"] == "dense"] == [0.5, 1.5]
    saved = json.loads((out / "sweep_threshold.json").read_text())["rows"]
    assert len(saved) == len(rows) and (out / "sweep_threshold.png").stat().st_size > 0
    relabelled = tool.main(["--batch-size", "2", "--num-batches", "1", "--iters", "1", "--checkpoints", str(paths[0]),
                            "--taus", "2.0", "--thresholds", "0.5", "--out-dir", str(out), *TINY])
    assert {r["tau"] for r in relabelled} == {2.0}
