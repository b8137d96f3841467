"""Reward, self-critical advantage and policy-gradient loss against values worked by hand."""

import math

import pytest
import torch

from iared_video.methods.iared.reinforce import (
    leave_one_out_advantage,
    outcome,
    policy_gradient_loss,
    reward,
    reward_denominator,
    self_critical_advantage,
)

KEPT = torch.tensor([2, 4, 1])
CORRECT = torch.tensor([True, True, False])


def test_square_reward_by_hand():
    # N = 4: 1 - (2/4)^2 = 0.75; 1 - (4/4)^2 = 0; wrong -> -tau
    assert torch.allclose(reward(KEPT, 4, CORRECT, tau=0.5, kind="square"), torch.tensor([0.75, 0.0, -0.5]))


def test_linear_reward_by_hand():
    assert torch.allclose(reward(KEPT, 4, CORRECT, tau=0.2, kind="linear"), torch.tensor([0.5, 0.0, -0.2]))


def test_unknown_reward_kind():
    with pytest.raises(ValueError, match="square"):
        reward(KEPT, 4, CORRECT, 0.5, kind="cube")


def test_probability_outcome_reward_by_hand():
    """REWARD_OUTCOME probability: p * (1 - (k/N)^2) - (1 - p) * tau; p = 1 and p = 0 give the paper's two cases."""
    p = torch.tensor([0.8, 1.0, 0.0])
    # 0.8 * 0.75 - 0.2 * 1.5 = 0.3; 1.0 * 0 - 0 = 0; 0 - 1.0 * 1.5 = -1.5
    torch.testing.assert_close(reward(KEPT, 4, p, tau=1.5), torch.tensor([0.3, 0.0, -1.5]))
    torch.testing.assert_close(reward(KEPT, 4, CORRECT.float(), tau=1.5), reward(KEPT, 4, CORRECT, tau=1.5))


def test_outcome_by_hand():
    logits, labels = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]]), torch.tensor([0, 2])
    assert outcome(logits, labels).tolist() == [True, False]
    e = math.e
    torch.testing.assert_close(outcome(logits, labels, "probability"),
                               torch.tensor([e ** 2 / (e ** 2 + 1 + e), 1 / (e ** 3 + 2)]))
    with pytest.raises(ValueError, match="probability"):
        outcome(logits, labels, "margin")


def test_advantage_and_loss_by_hand():
    sampled = reward(KEPT, 4, CORRECT, 0.5)  # [0.75, 0, -0.5]
    greedy = reward(torch.tensor([3, 4, 4]), 4, torch.tensor([True, False, False]), 0.5)  # [7/16, -0.5, -0.5]
    advantage = self_critical_advantage(sampled, greedy)
    assert torch.allclose(advantage, torch.tensor([0.3125, 0.5, 0.0]))
    log_prob = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    loss = policy_gradient_loss(advantage, log_prob)
    # -(0.3125 * -1 + 0.5 * -2 + 0 * -3) / 3 = 1.3125 / 3
    assert loss.item() == pytest.approx(1.3125 / 3)
    loss.backward()
    assert torch.allclose(log_prob.grad, -advantage / 3)


def test_advantage_carries_no_gradient():
    sampled = torch.tensor([1.0, 0.0], requires_grad=True)
    assert not self_critical_advantage(sampled, torch.zeros(2)).requires_grad


def test_leave_one_out_advantage_by_hand():
    rewards = torch.tensor([1.0, 0.0, -0.5, 0.8])
    # K = 2: inputs (1, 0) and (-0.5, 0.8); each sample minus the other one
    assert torch.allclose(leave_one_out_advantage(rewards, 2), torch.tensor([1.0, -1.0, -1.3, 1.3]))
    # K = 4, one input: 1 - (0 - 0.5 + 0.8) / 3 = 0.9, 0 - 1.3 / 3, -0.5 - 1.8 / 3, 0.8 - 0.5 / 3
    want = torch.tensor([0.9, -1.3 / 3, -0.5 - 0.6, 0.8 - 0.5 / 3])
    assert torch.allclose(leave_one_out_advantage(rewards, 4), want)
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_advantage(rewards, 1)


def test_reward_normalizers_by_hand_for_a_later_group():
    """Group 2 of D = 2 on N = 8 patches: 4 tokens enter it (sample 0) / all 8 (sample 1); 2 / 6 are kept."""
    keep_after_group1 = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8], dtype=torch.bool)
    keep_after_group2 = torch.tensor([[1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    keep = [keep_after_group1, keep_after_group2]
    correct = torch.tensor([True, True])
    original = reward_denominator(keep, 1, "original")
    entering = reward_denominator(keep, 1, "entering")
    assert original.tolist() == [8.0, 8.0] and entering.tolist() == [4.0, 8.0]
    kept = keep_after_group2.sum(1)
    # "original": 1 - (2/8)^2 = 15/16, 1 - (6/8)^2 = 7/16; "entering": 1 - (2/4)^2 = 3/4, 1 - (6/8)^2 = 7/16
    assert torch.allclose(reward(kept, original, correct, 0.5), torch.tensor([15 / 16, 7 / 16]))
    assert torch.allclose(reward(kept, entering, correct, 0.5), torch.tensor([0.75, 7 / 16]))
    # the first group divides by N either way
    assert reward_denominator(keep, 0, "entering").tolist() == [8.0, 8.0]
    with pytest.raises(ValueError, match="original"):
        reward_denominator(keep, 1, "input")
