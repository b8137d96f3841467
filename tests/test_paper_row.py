"""The main job's "iared-paper" row is the paper's IA-RED^2, and the expected-count decision breaks ties stably."""

from __future__ import annotations

import os

import torch

from iared_video.methods import build_model, load_config
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.models.policies import expected_counts, topk_per_sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = {kind: os.path.join(ROOT, "configs", "Synthetic", f"{prefix}_tiny_iared_paper.yaml")
         for kind, prefix in (("video", "tsf"), ("image", "deit"))}


def test_paper_configs_hold_the_papers_settings():
    for kind, path in PAPER.items():
        i = load_config(path, ["MODEL.PRETRAINED", ""]).IARED
        assert (i.THRESHOLD, i.TAU, i.REWARD, i.DECISION, i.REWARD_OUTCOME, i.REWARD_NORMALIZER) == (
            0.5, 1.5, "square", "threshold", "prediction", "entering"), kind
        assert (i.INTERPRETER_HIDDEN, i.INTERPRETER_INPUT, i.INTERPRETER_INIT_SCORE) == (0, "tokens", 0.5), kind
        assert (i.FIRST_DROP_GROUP, i.LAST_DROP_GROUP, i.REINFORCE_SAMPLES, i.REINFORCE_BASELINE) == (1, 0, 1, "greedy")


def test_paper_video_model_keeps_exactly_the_tokens_scored_at_least_half(monkeypatch):
    cfg = load_config(PAPER["video"], ["MODEL.PRETRAINED", ""])
    model = build_model(cfg).eval()
    frames, size, patch = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.MODEL.PATCH_SIZE
    n = frames * (size // patch) ** 2
    # hand-made scores for two videos: 0.5 exactly is kept, just below is dropped (I < 0.5 is removed)
    pattern = torch.tensor([0.9, 0.5, 0.4999, 0.1, 0.75, 0.25])
    hand = torch.stack([pattern.repeat(n // 6), pattern.flip(0).repeat(n // 6)])
    monkeypatch.setattr(InterpreterPolicy, "score", lambda self, inp: hand.flatten()[: inp.tokens.shape[0]])
    with torch.no_grad():
        out = model(torch.randn(2, 3, frames, size, size), return_policy=True)
    assert torch.equal(out.keep[0], hand >= 0.5)
    assert out.keep[0].sum().item() == 2 * 3 * (n // 6)  # three of every six kept
    assert torch.equal(out.scores[0], hand)


def test_expected_count_ties_are_broken_by_token_order():
    # one sample of six tokens, four tied at 0.5: keeping 3 takes the 0.9 and the two earliest tied tokens
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.1, 0.5])
    keep = topk_per_sample(scores, torch.tensor([6]), torch.tensor([3]))
    assert keep.tolist() == [True, True, True, False, False, False]
    # two packed samples, all tied: each keeps its first k
    keep = topk_per_sample(torch.full((7,), 0.3), torch.tensor([4, 3]), torch.tensor([2, 1]))
    assert keep.tolist() == [True, True, False, False, True, False, False]


def test_uniform_counts_take_the_same_tokens_and_counts():
    """The per-row path for equal counts (every sample at group 0) keeps what the packed path keeps, ties
    included, and ``expected_counts`` sums the same scores: hand-made ties, then 200 random score sets."""
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.1, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    counts, k = torch.tensor([6, 6]), torch.tensor([3, 2])
    assert topk_per_sample(scores, counts, k, uniform=6).tolist() == [True, True, True, False, False, False,
                                                                     True, True, False, False, False, False]
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        batch, num = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
        scores = (torch.rand(batch * num, generator=gen) * 4).round() / 4  # many ties
        counts, k = torch.full((batch,), num), torch.randint(0, num + 1, (batch,), generator=gen)
        assert torch.equal(topk_per_sample(scores, counts, k, num), topk_per_sample(scores, counts, k))
        assert torch.equal(expected_counts(scores, counts, num), expected_counts(scores, counts))
