"""IA-RED^2's token-drop policy: one multi-head interpreter per group, drop where ``I < threshold``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from iared_video.methods.iared.interpreter import MultiHeadInterpreter
from iared_video.models.backbones import Embedded
from iared_video.models.policies import MODES, DropPolicy, GroupInput, expected_counts, topk_per_sample

__all__ = ["InterpreterPolicy", "temporal_difference"]

#: What the input-level interpreter scores (IARED.INTERPRETER_INPUT).
INTERPRETER_INPUTS = ("tokens", "content", "difference")
#: IA-RED^2's deterministic keep rule (IARED.DECISION).
DECISIONS = ("threshold", "expected_count")


class InterpreterPolicy(DropPolicy):
    """IA-RED^2: one multi-head interpreter per group, drop where ``I < threshold``.

    Groups outside ``first_group..last_group`` (0-based, inclusive; ``last_group`` None: the last group) keep
    every token; their interpreters exist (so checkpoints keep one layout) but are never run or trained.
    With ``input_kind="content"`` the first group's interpreter scores the patch embedding before the positional
    (and temporal) embedding, ``Embedded.raw``; with ``"difference"`` its change from the frame before
    (``temporal_difference``). The kept tokens enter the blocks with their embedding as always.
    """

    def __init__(self, dim: int, num_groups: int, threshold: float = 0.5, num_heads: int = 4,
                 head_dim: int = 64, first_group: int = 0, init_score: float = 0.5,
                 last_group: int | None = None, hidden: int = 0, input_kind: str = "tokens",
                 decision: str = "threshold") -> None:
        super().__init__()
        last_group = num_groups - 1 if last_group is None else last_group
        if not 0 <= first_group <= last_group < num_groups:
            raise ValueError(f"need 0 <= first_group <= last_group < {num_groups}, got {first_group} and {last_group}")
        if input_kind not in INTERPRETER_INPUTS:
            raise ValueError(f"input_kind must be one of {INTERPRETER_INPUTS}, got {input_kind!r}")
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        self.threshold, self.first_group, self.last_group = threshold, first_group, last_group
        self.input_kind, self.decision = input_kind, decision
        self.interpreters = nn.ModuleList(MultiHeadInterpreter(dim, num_heads, head_dim, init_score, hidden)
                                          for _ in range(num_groups))

    def share(self, source: InterpreterPolicy, threshold: float) -> None:
        """Use ``source``'s interpreters and dropping groups (no copy) with ``threshold``."""
        self.threshold, self.interpreters = threshold, source.interpreters
        self.first_group, self.last_group = source.first_group, source.last_group
        self.input_kind, self.decision = source.input_kind, source.decision

    def acts_on(self, group: int) -> bool:
        return self.first_group <= group <= self.last_group

    def score(self, inp: GroupInput) -> Tensor:
        if inp.group == 0 and self.input_kind != "tokens":  # group 0: every token, sample-major
            emb = inp.embedded
            seen = emb.raw if self.input_kind == "content" else temporal_difference(emb)
            return self.interpreters[0](seen.flatten(0, 1))
        return self.interpreters[inp.group](inp.tokens)

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode == "greedy" and self.decision == "expected_count":
            counts, uniform = inp.counts, inp.uniform_count
            return topk_per_sample(scores, counts, expected_counts(scores, counts, uniform), uniform)
        if mode == "greedy":
            return scores >= self.threshold
        if mode == "sample":
            return torch.bernoulli(scores.detach()).bool()
        if mode == "keep_all":
            return torch.ones_like(scores, dtype=torch.bool)
        raise ValueError(f"unknown policy mode {mode!r}; expected one of {MODES}")


def temporal_difference(emb: Embedded) -> Tensor:
    """``(B, N, C)`` each patch embedding minus the same position one frame earlier (the first frame: minus the
    second, so every frame sees a frame-to-frame change; zeros for a one-frame input)."""
    frames, h, w = emb.grid
    raw = emb.raw.view(emb.raw.shape[0], frames, h * w, -1)
    if frames == 1:
        return torch.zeros_like(emb.raw)
    diff = raw[:, 1:] - raw[:, :-1]
    return torch.cat([-diff[:, :1], diff], dim=1).flatten(1, 2)
