"""Curriculum: stage order, modes, and which parameters receive gradients after a real backward step."""

import pytest
import torch

from iared_video.config import ConfigError
from iared_video.methods import build_model, get_method, load_config, model_gmacs_per_sample, stages_of
from iared_video.methods.iared import RewardOptions, reinforce_step
from iared_video.methods.stages import Stage, StagePlan, eval_modes, train_modes
from iared_video.methods.steps import StepArgs, ce_step

D = 2
OPTS = ["MODEL.NUM_CLASSES", "3", "MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "2",
        "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "IARED.NUM_GROUPS", str(D),
        "IARED.INTERPRETER_HEADS", "2", "IARED.INTERPRETER_DIM", "8"]
EMBEDDINGS = ("backbone.patch_embed.", "backbone.pos_embed", "backbone.time_embed", "backbone.cls_token")
IARED2 = get_method("iared")


def build_stages(name, num_groups, max_epoch, interpreter_epochs, backbone_epochs, first_group=0, last_group=None):
    """The stages of method ``name`` for a plan written out (no config)."""
    plan = StagePlan(num_groups, max_epoch, interpreter_epochs, backbone_epochs, first_group, last_group)
    return get_method(name).stages(plan)


def test_stage_order_and_modes():
    stages = build_stages("iared", 3, max_epoch=9, interpreter_epochs=10, backbone_epochs=20)
    assert [s.name for s in stages] == ["interpreter_g1", "backbone_g1", "interpreter_g2", "backbone_g2",
                                        "interpreter_g3", "backbone_g3"]
    assert [s.epochs for s in stages] == [10, 20] * 3
    assert train_modes(stages[2], 3) == ["greedy", "sample", "keep_all"]
    assert train_modes(stages[3], 3) == ["greedy", "greedy", "keep_all"]
    assert eval_modes(stages[2], 3) == ["greedy", "greedy", "keep_all"]
    assert build_stages("drop_random", 3, 7, 10, 20) == [Stage("backbone", 0, 7)]  # Alg. 1's backbone stage
    assert [s.kind for s in build_stages("iared", 1, 0, 5, 0)] == ["interpreter"]


def _grads(model):
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def _expected(model, stage):
    names = [n for n, _ in model.named_parameters()]
    if stage.kind == "interpreter":
        return {n for n in names if n.startswith(f"policy.interpreters.{stage.group}.")}
    size = model.group_size
    blocks = {f"backbone.blocks.{b}." for b in range(stage.group * size, len(model.backbone.blocks))}
    return {n for n in names if any(n.startswith(p) for p in blocks) or n.startswith(("backbone.norm.",
                                                                                       "backbone.head."))}


@pytest.mark.parametrize("index", range(2 * D))
def test_gradients_reach_only_the_stage_parameters(index):
    torch.manual_seed(0)
    cfg = load_config(None, OPTS)
    model = build_model(cfg)
    stage = build_stages("iared", D, 0, 1, 1)[index]
    IARED2.prepare_stage(cfg, model, stage)
    x, y = torch.randn(4, 3, 2, 32, 32), torch.tensor([0, 1, 2, 0])
    modes = train_modes(stage, D)
    if stage.kind == "interpreter":
        loss, _ = reinforce_step(model, model, x, y, modes, stage.group, RewardOptions())
        loss = loss + 0 * loss  # a plain scalar loss, as in training
    else:
        model.train()
        loss, _ = ce_step(model, x, y, modes, StepArgs())
    loss.backward()
    got, expected = _grads(model), _expected(model, stage)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert got <= expected and got, f"{stage.name}: unexpected grads {got - expected}"
    assert not any(n.startswith(EMBEDDINGS) for n in got | trainable)
    if stage.kind == "backbone":
        last = len(model.backbone.blocks) - 1
        assert "backbone.head.weight" in got and f"backbone.blocks.{last}.mlp.fc2.weight" in got
    else:
        assert f"policy.interpreters.{stage.group}.query.weight" in got


@pytest.mark.parametrize("name", ["drop_random", "drop_attention", "drop_temporal_diff"])
def test_fixed_ratio_baselines_freeze_what_alg1_freezes(name):
    """The baselines fine-tune every block, the final norm and the head; the embeddings and the class token stay
    as IA-RED^2's backbone stage leaves them (frozen), and a real backward step reaches only the rest."""
    torch.manual_seed(0)
    cfg = load_config(None, [*OPTS, "METHOD.NAME", name, "DROP.RATIO", "0.5"])
    model = build_model(cfg)
    (stage,) = stages_of(cfg.clone()) if cfg.SOLVER.MAX_EPOCH else build_stages(name, D, 1, 0, 0)
    get_method(name).prepare_stage(cfg, model, stage)
    model.train()
    loss, _ = ce_step(model, torch.randn(4, 3, 2, 32, 32), torch.tensor([0, 1, 2, 0]), train_modes(stage, D),
                      StepArgs())
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if not n.startswith(EMBEDDINGS)}
    assert not any(n.startswith(EMBEDDINGS) for n in _grads(model))
    assert "backbone.blocks.0.attn.qkv.weight" in _grads(model) and "backbone.head.weight" in _grads(model)


def test_late_first_drop_group_keeps_early_groups_dense():
    """IARED.FIRST_DROP_GROUP 2: no stage for group 1, group 1 keeps every token, only later groups sample."""
    assert [s.name for s in build_stages("iared", 3, 0, 4, 2, first_group=1)] == [
        "interpreter_g2", "backbone_g2", "interpreter_g3", "backbone_g3"]
    torch.manual_seed(0)
    cfg = load_config(None, [*OPTS, "IARED.FIRST_DROP_GROUP", "2"])
    stage = stages_of(cfg)[0]
    assert [s.name for s in stages_of(cfg)] == ["interpreter_g2", "backbone_g2"]
    model = build_model(cfg)
    x, y = torch.randn(4, 3, 2, 32, 32), torch.tensor([0, 1, 2, 0])
    out = model(x, return_policy=True, modes=["sample", "sample"])
    assert out.keep[0].all() and (out.scores[0] == 1).all() and out.log_probs[0] is None
    assert out.log_probs[1] is not None and not out.keep[1].all()
    IARED2.prepare_stage(cfg, model, stage)
    torch.manual_seed(0)  # a draw whose advantage is not 0 for every sample (else no gradient at all)
    loss, stats = reinforce_step(model, model, x, y, train_modes(stage, D), stage.group, RewardOptions())
    assert stats["advantage"] != 0
    loss.backward()
    assert _grads(model) == _expected(model, stage) != set()
    with pytest.raises(ConfigError, match="FIRST_DROP_GROUP=3 must lie in"):
        load_config(None, [*OPTS, "IARED.FIRST_DROP_GROUP", "3"])


def test_early_last_drop_group_keeps_later_groups_as_given():
    """IARED.LAST_DROP_GROUP 1 of 2: no stage for group 2, which keeps exactly the tokens group 1 kept and costs
    no interpreter."""
    assert [s.name for s in build_stages("iared", 3, 0, 4, 2, first_group=1, last_group=1)] == [
        "interpreter_g2", "backbone_g2"]
    cfg = load_config(None, [*OPTS, "IARED.LAST_DROP_GROUP", "1"])
    assert [s.name for s in stages_of(cfg)] == ["interpreter_g1", "backbone_g1"]
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the scores so that group 1 drops some tokens
        model.policy.interpreters[0].query.weight.normal_(std=0.5)
    out = model(torch.randn(4, 3, 2, 32, 32), return_policy=True, modes=["sample", "sample"])
    assert not out.keep[0].all() and out.log_probs[0] is not None
    assert torch.equal(out.keep[1], out.keep[0]) and out.log_probs[1] is None
    every = load_config(None, OPTS)
    full = build_model(every).eval()
    full.load_state_dict(model.state_dict())
    counts = torch.tensor([[6, 6]])  # of the 8 patch tokens (2 frames of 2 x 2)
    one = model_gmacs_per_sample(model, counts, num_patches=8)
    both = model_gmacs_per_sample(full, counts, num_patches=8)
    assert (both - one).item() * 1e9 == pytest.approx(6 * 32 * 2)  # group 2's interpreter: 6 tokens x C=32 x H=2
    with pytest.raises(ConfigError, match="LAST_DROP_GROUP=3 must be 0"):
        load_config(None, [*OPTS, "IARED.LAST_DROP_GROUP", "3"])


def test_interpreter_option_errors_name_the_keys():
    with pytest.raises(ConfigError, match="INTERPRETER_INPUT content changes the first group's interpreter only"):
        load_config(None, [*OPTS, "IARED.INTERPRETER_INPUT", "content", "IARED.FIRST_DROP_GROUP", "2"])
    with pytest.raises(ConfigError, match="INTERPRETER_INPUT difference changes the first group's interpreter"):
        load_config(None, [*OPTS, "IARED.INTERPRETER_INPUT", "difference", "IARED.FIRST_DROP_GROUP", "2"])
    with pytest.raises(ConfigError, match="difference compares frames and needs a video model"):
        load_config(None, [*OPTS, "MODEL.MODEL_NAME", "deit", "IARED.INTERPRETER_INPUT", "difference"])
    with pytest.raises(ConfigError, match="INTERPRETER_HIDDEN must be 0"):
        load_config(None, [*OPTS, "IARED.INTERPRETER_HIDDEN", "-4"])
    with pytest.raises(ConfigError, match="REWARD_OUTCOME"):
        load_config(None, [*OPTS, "IARED.REWARD_OUTCOME", "margin"])
    cfg = load_config(None, [*OPTS, "IARED.INTERPRETER_INPUT", "content", "IARED.INTERPRETER_HIDDEN", "8"])
    assert build_model(cfg).policy.interpreters[0].hidden[0].out_features == 8
