"""Token-drop policies with one interface: score the patch tokens entering a group, decide which stay.

Modes of a group (chosen by the caller, e.g. the training curriculum):
    ``"greedy"``: the policy's inference rule (e.g. a threshold or a top-k);
    ``"sample"``: a stochastic decision to train the policy on (e.g. keep ``u ~ Bernoulli(I)``);
    ``"keep_all"``: keep every token.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from iared_video.models.backbones import Embedded
from iared_video.models.packed import PackedSeqs

__all__ = ["GroupInput", "DropPolicy", "NoDropPolicy", "MODES", "topk_per_sample", "expected_counts"]

MODES = ("greedy", "sample", "keep_all")


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
            tokens of block ``b`` (0-based) run densely on the input, computed on demand (attention-scored policies).
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

    @property
    def uniform_count(self) -> int | None:
        """Patch tokens present in every sample if all have as many (host-side, no sync), else None."""
        length = self.seqs.uniform_length
        return None if length is None else length - self.num_prefix


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


def topk_per_sample(scores: Tensor, counts: Tensor, k: Tensor, uniform: int | None = None) -> Tensor:
    """Keep mask of the ``k[b]`` highest scores within each sample of packed sample-major ``scores``.

    Ties are broken by token order (the earlier token is kept), the same on every run and device.
    ``uniform``: the count of every sample when all are equal (``GroupInput.uniform_count``): one sort per
    row of the ``(B, N)`` view instead of one over the packed batch (the same mask, but for scores within
    about 1e-13 of each other, which the packed key's sample offset rounds to a tie).
    """
    if uniform:  # equal scores: the earlier token first (float32 or narrower scores: the packed path's order)
        order = scores.detach().clamp(0, 1).view(-1, uniform).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(uniform, device=scores.device).expand_as(order))
        return (rank < k[:, None]).flatten()
    key = 1.0 - scores.detach().double().clamp(0, 1)  # score descending
    sample = torch.repeat_interleave(torch.arange(counts.numel(), device=scores.device), counts)
    order = (sample.double() * 2.0 + key).argsort(stable=True)  # sample-major, then as above
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=scores.device) - starts[sample[order]]
    return rank < k[sample]


def expected_counts(scores: Tensor, counts: Tensor, uniform: int | None = None) -> Tensor:
    """``(B,)`` tokens a Bernoulli(score) sample keeps on average in each sample, rounded (at least 1).
    ``uniform`` as in ``topk_per_sample``."""
    if uniform:
        total = scores.detach().double().view(-1, uniform).sum(1)
    else:
        sample = torch.repeat_interleave(torch.arange(counts.numel(), device=scores.device), counts)
        total = torch.zeros(counts.numel(), dtype=torch.float64, device=scores.device)
        total.index_add_(0, sample, scores.detach().double())
    return total.round().long().clamp_min(1)
