"""Token-drop policies with one interface: score the patch tokens entering a group, decide which stay.

Modes of a group (chosen by the caller, e.g. the training curriculum):
    ``"greedy"``: the inference rule (threshold for the interpreter, top-k for fixed-ratio policies);
    ``"sample"``: keep ``u ~ Bernoulli(I)`` (interpreter only; REINFORCE);
    ``"keep_all"``: keep every token.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from iared_video.models.backbones import Embedded
from iared_video.models.interpreter import MultiHeadInterpreter
from iared_video.models.packed import PackedSeqs

__all__ = ["GroupInput", "DropPolicy", "InterpreterPolicy", "NoDropPolicy", "RandomPolicy",
           "AttentionPolicy", "TemporalDiffPolicy", "FixedRatioPolicy", "MODES", "PAPER_ATTENTION_BLOCK",
           "INTERPRETER_INPUTS", "DECISIONS",            "topk_per_sample", "expected_counts"]

MODES = ("greedy", "sample", "keep_all")
#: What the input-level interpreter scores (IARED.INTERPRETER_INPUT).
INTERPRETER_INPUTS = ("tokens", "content", "difference")
#: IA-RED^2's deterministic keep rule (IARED.DECISION).
DECISIONS = ("threshold", "expected_count")
PAPER_ATTENTION_BLOCK = 1  # the paper's raw-attention baseline: Block_1, the second block (0-based index 1)


@dataclass
class GroupInput:
    """What a policy sees at the entry of group ``group``.

    Attributes:
        group: group index j (0-based).
        tokens: ``(T_patch, C)`` packed patch tokens still present, sample-major.
        batch: batch size B.
        num_patches: N, patch tokens per sample before any drop.
        embedded: the input embedding (used by input-level policies at group 0).
        class_attention: ``class_attention(b)`` -> ``(B, N)`` head-averaged class-token attention over the patch
            tokens of block ``b`` (0-based) run densely on the input, computed on demand (the raw-attention policy).
        seqs: the packed rows' boundaries (each sample's prefix tokens, then its present patch tokens).
        num_prefix: prefix (class/distillation) tokens per sample.
    """

    group: int
    tokens: Tensor
    batch: int
    num_patches: int
    embedded: Embedded
    class_attention: Callable[[int], Tensor]
    seqs: PackedSeqs
    num_prefix: int

    @property
    def counts(self) -> Tensor:
        """``(B,)`` patch tokens present per sample (the rows of ``tokens``, in order), on the device."""
        return self.seqs.cu_seqlens.diff().long() - self.num_prefix


class DropPolicy(nn.Module, abc.ABC):
    """Base class: ``acts_on(j)`` says whether group j may drop tokens; ``score`` and ``keep`` run only there."""

    @abc.abstractmethod
    def acts_on(self, group: int) -> bool:
        """Whether group ``group`` scores and may drop tokens."""

    @abc.abstractmethod
    def score(self, inp: GroupInput) -> Tensor:
        """Informative scores ``(T_patch,)`` in [0, 1] of the tokens in ``inp``."""

    @abc.abstractmethod
    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        """Boolean ``(T_patch,)`` keep decisions."""


class NoDropPolicy(DropPolicy):
    """Dense model: every token is kept everywhere (``score``/``keep`` say so if called)."""

    def acts_on(self, group: int) -> bool:
        return False

    def score(self, inp: GroupInput) -> Tensor:
        return inp.tokens.new_ones(inp.tokens.shape[0])

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        return torch.ones_like(scores, dtype=torch.bool)


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
            counts = inp.counts
            return topk_per_sample(scores, counts, expected_counts(scores, counts))
        if mode == "greedy":
            return scores >= self.threshold
        if mode == "sample":
            return torch.bernoulli(scores.detach()).bool()
        if mode == "keep_all":
            return torch.ones_like(scores, dtype=torch.bool)
        raise ValueError(f"unknown policy mode {mode!r}; expected one of {MODES}")


class FixedRatioPolicy(DropPolicy):
    """Drops ``drop_ratio`` of the patch tokens at the input (group 0), lowest scores first."""

    def __init__(self, drop_ratio: float) -> None:
        super().__init__()
        if not 0.0 <= drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must lie in [0, 1), got {drop_ratio}")
        self.drop_ratio = drop_ratio

    def acts_on(self, group: int) -> bool:
        return group == 0

    def num_kept(self, num_patches: int) -> int:
        return max(1, num_patches - int(math.floor(self.drop_ratio * num_patches + 0.5)))

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode not in MODES:
            raise ValueError(f"unknown policy mode {mode!r}; expected one of {MODES}")
        if mode == "keep_all":
            return torch.ones_like(scores, dtype=torch.bool)
        per_sample = scores.view(inp.batch, inp.num_patches)
        top = per_sample.topk(self.num_kept(inp.num_patches), dim=1).indices
        mask = torch.zeros_like(per_sample, dtype=torch.bool).scatter_(1, top, torch.ones_like(top, dtype=torch.bool))
        return mask.flatten()


class RandomPolicy(FixedRatioPolicy):
    """Random drop baseline: uniform random scores."""

    def score(self, inp: GroupInput) -> Tensor:
        return torch.rand(inp.tokens.shape[0], device=inp.tokens.device)


class AttentionPolicy(FixedRatioPolicy):
    """Raw-attention baseline: head-averaged class-token attention of block ``block`` of the backbone.

    The blocks before ``block`` first run on every token (the default, the paper's Block_1, costs one dense
    block more); the drop itself happens at the input, as for the other fixed-ratio policies. The policy sees
    only that attention map (``GroupInput.class_attention``), not the backbone.

    Args:
        drop_ratio: fraction of patch tokens dropped at the input.
        block: 0-based index of the block whose class-token attention scores the patches.
    """

    def __init__(self, drop_ratio: float, block: int = PAPER_ATTENTION_BLOCK) -> None:
        super().__init__(drop_ratio)
        if block < 0:
            raise ValueError(f"block must be a 0-based block index, got {block}")
        self.block = block

    @torch.no_grad()
    def score(self, inp: GroupInput) -> Tensor:
        return _normalise(inp.class_attention(self.block)).flatten()


class TemporalDiffPolicy(FixedRatioPolicy):
    """Temporal-difference baseline: L2 distance of a patch token to the same position at t-1 (t=0 vs zeros)."""

    def score(self, inp: GroupInput) -> Tensor:
        emb = inp.embedded
        frames, h, w = emb.grid
        tokens = emb.raw.view(inp.batch, frames, h * w, -1)
        previous = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1)
        distance = (tokens - previous).norm(dim=-1).flatten(1)
        return _normalise(distance).flatten()


def temporal_difference(emb: Embedded) -> Tensor:
    """``(B, N, C)`` each patch embedding minus the same position one frame earlier (the first frame: minus the
    second, so every frame sees a frame-to-frame change; zeros for a one-frame input)."""
    frames, h, w = emb.grid
    raw = emb.raw.view(emb.raw.shape[0], frames, h * w, -1)
    if frames == 1:
        return torch.zeros_like(emb.raw)
    diff = raw[:, 1:] - raw[:, :-1]
    return torch.cat([-diff[:, :1], diff], dim=1).flatten(1, 2)


def topk_per_sample(scores: Tensor, counts: Tensor, k: Tensor) -> Tensor:
    """Keep mask of the ``k[b]`` highest scores within each sample of packed sample-major ``scores``."""
    sample = torch.repeat_interleave(torch.arange(counts.numel(), device=scores.device), counts)
    key = sample.double() * 2.0 + (1.0 - scores.detach().double().clamp(0, 1))  # sample-major, score descending
    order = key.argsort()
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=scores.device) - starts[sample[order]]
    return rank < k[sample]


def expected_counts(scores: Tensor, counts: Tensor) -> Tensor:
    """``(B,)`` tokens a Bernoulli(score) sample keeps on average in each sample, rounded (at least 1)."""
    sample = torch.repeat_interleave(torch.arange(counts.numel(), device=scores.device), counts)
    total = torch.zeros(counts.numel(), dtype=torch.float64, device=scores.device)
    total.index_add_(0, sample, scores.detach().double())
    return total.round().long().clamp_min(1)


def _normalise(values: Tensor) -> Tensor:
    """Scale each row to [0, 1] by its maximum (order preserved, heatmap-friendly)."""
    return values / values.amax(dim=1, keepdim=True).clamp_min(1e-12)
