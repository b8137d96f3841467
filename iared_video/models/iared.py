"""IA-RED^2: a ViT cut into D groups, each opened by a token-drop policy.

Tokens dropped at group j are physically removed: every later group runs its
blocks on fewer tokens (packed per sample, see ``packed.py``). Class and
distillation tokens are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from iared_video.models.backbones import Embedded
from iared_video.models.packed import PackedSeqs, packed_block
from iared_video.models.policies import MODES, DropPolicy, GroupInput

__all__ = ["IARED", "PolicyOutput"]


@dataclass
class PolicyOutput:
    """Result of ``model(x, return_policy=True)``.

    Attributes:
        logits: ``(B, num_classes)``.
        scores: D tensors ``(B, N)``: informative scores at each group's entry, 0 where dropped earlier.
        keep: D bool tensors ``(B, N)``: tokens present after each group's decision.
        log_probs: D entries, ``(B,)`` sum over present tokens of ``log(I u + (1-I)(1-u))`` for groups in
            ``"sample"`` mode, else None.
        grid: ``(T, h, w)`` patch grid of the input.
    """

    logits: Tensor
    scores: list[Tensor] = field(default_factory=list)
    keep: list[Tensor] = field(default_factory=list)
    log_probs: list[Tensor | None] = field(default_factory=list)
    grid: tuple[int, int, int] = (1, 1, 1)

    @property
    def keep_ratio(self) -> Tensor:
        """``(B,)`` fraction of patch tokens kept after the last group."""
        return self.keep[-1].float().mean(dim=1)


class _PackState:
    """Patch tokens still present (packed, sample-major) and where they came from."""

    def __init__(self, patches: Tensor) -> None:
        batch, num, dim = patches.shape
        self.batch, self.num_patches = batch, num
        self.tokens = patches.reshape(batch * num, dim)
        self.origin = torch.arange(batch * num, device=patches.device)  # flat index b * N + n

    def scatter(self, values: Tensor) -> Tensor:
        """Values of present tokens -> ``(B, N)`` map, 0 for absent tokens."""
        full = values.new_zeros(self.batch * self.num_patches)
        return full.index_put((self.origin,), values).view(self.batch, self.num_patches)

    def sample_ids(self) -> Tensor:
        """Sample index of each present token."""
        return self.origin // self.num_patches

    def drop(self, keep: Tensor) -> None:
        self.tokens, self.origin = self.tokens[keep], self.origin[keep]


def _pack(prefix: Tensor, patches: Tensor, sample: Tensor) -> tuple[Tensor, PackedSeqs, Tensor, Tensor]:
    """Interleave per-sample ``[prefix, patches]`` into one packed tensor.

    Returns the packed tokens, their sequence info and the packed positions of the prefix and patch tokens.
    """
    batch, num_prefix, dim = prefix.shape
    counts = torch.bincount(sample, minlength=batch)
    lengths = counts + num_prefix
    seqs = PackedSeqs.from_lengths(lengths.tolist(), prefix.device)  # the one host sync per group
    starts = seqs.cu_seqlens[:-1].long()
    prefix_pos = (starts[:, None] + torch.arange(num_prefix, device=prefix.device)).flatten()
    first_patch = torch.cumsum(counts, 0) - counts
    rank = torch.arange(patches.shape[0], device=prefix.device) - first_patch[sample]
    patch_pos = starts[sample] + num_prefix + rank
    packed = prefix.new_empty(seqs.total, dim)
    packed[prefix_pos] = prefix.reshape(-1, dim)
    packed[patch_pos] = patches
    return packed, seqs, prefix_pos, patch_pos


class IARED(nn.Module):
    """IA-RED^2 wrapper around a backbone with ``embed``, ``blocks`` and ``forward_head``.

    Args:
        backbone: ``TimeSformer`` or ``TimmViT``.
        policy: the token-drop policy (interpreter, fixed-ratio baseline or none).
        num_groups: D; must divide the number of blocks.
    """

    output_type: type[PolicyOutput] = PolicyOutput  # what ``forward(..., return_policy=True)`` fills

    def __init__(self, backbone: nn.Module, policy: DropPolicy, num_groups: int) -> None:
        super().__init__()
        depth = len(backbone.blocks)
        if depth % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide the backbone depth {depth}")
        self.backbone, self.policy, self.num_groups = backbone, policy, num_groups
        self.group_size = depth // num_groups

    def group_blocks(self, group: int) -> Sequence[nn.Module]:
        """Blocks of group ``group`` (0-based)."""
        return self.backbone.blocks[group * self.group_size:(group + 1) * self.group_size]

    def forward(self, x: Tensor, return_policy: bool = False,
                modes: Sequence[str] | None = None) -> Tensor | PolicyOutput:
        """Classify ``x``; with ``return_policy`` also return per-group scores and keep masks.

        Args:
            x: ``(B, C, T, H, W)`` clips or ``(B, C, H, W)`` images, as the backbone expects.
            return_policy: return a ``PolicyOutput`` instead of logits.
            modes: one of ``"greedy"``, ``"sample"``, ``"keep_all"`` per group (default all greedy).
        """
        modes = self._check_modes(modes)
        emb = self.backbone.embed(x)
        state, prefix = _PackState(emb.patches), emb.prefix
        out = self.output_type(logits=x.new_empty(0), grid=emb.grid)
        for group in range(self.num_groups):
            self._decide(group, modes[group], emb, state, out)
            prefix = self._run_group(group, prefix, state)
        out.logits = self.backbone.forward_head(prefix)
        return out if return_policy else out.logits

    def _check_modes(self, modes: Sequence[str] | None) -> list[str]:
        modes = list(modes) if modes is not None else ["greedy"] * self.num_groups
        if len(modes) != self.num_groups or any(m not in MODES for m in modes):
            raise ValueError(f"modes must be {self.num_groups} values from {MODES}, got {modes}")
        return modes

    def _decide(self, group: int, mode: str, emb: Embedded, state: _PackState, out: PolicyOutput) -> None:
        """Score the present tokens, record maps, and drop the rejected ones."""
        previous = out.keep[-1] if out.keep else None
        if not self.policy.acts_on(group) or mode == "keep_all":
            present = torch.ones(state.tokens.shape[0], dtype=torch.bool, device=state.tokens.device)
            out.scores.append(state.scatter(present.to(state.tokens.dtype)))
            out.keep.append(previous if previous is not None else out.scores[-1].bool())
            out.log_probs.append(None)
            return
        inp = GroupInput(group, state.tokens, state.batch, state.num_patches, emb, self.backbone)
        scores = self.policy.score(inp)
        keep = self.policy.keep(inp, scores, mode)
        out.scores.append(state.scatter(scores))
        out.log_probs.append(self._log_prob(scores, keep, state) if mode == "sample" else None)
        state.drop(keep)
        out.keep.append(state.scatter(torch.ones_like(state.origin, dtype=torch.bool)))

    @staticmethod
    def _log_prob(scores: Tensor, keep: Tensor, state: _PackState) -> Tensor:
        """Per-sample ``sum_i log(I u + (1 - I)(1 - u))`` over the tokens present at this group."""
        u = keep.to(scores.dtype)
        token_logp = torch.log((scores * u + (1 - scores) * (1 - u)).clamp_min(1e-8))
        sample = state.sample_ids()
        return token_logp.new_zeros(state.batch).index_add(0, sample, token_logp)

    def _run_group(self, group: int, prefix: Tensor, state: _PackState) -> Tensor:
        """Run one group's blocks on the packed tokens; returns the new prefix tokens."""
        packed, seqs, prefix_pos, patch_pos = _pack(prefix, state.tokens, state.sample_ids())
        for block in self.group_blocks(group):
            packed = packed_block(block, packed, seqs)
        state.tokens = packed[patch_pos]
        return packed[prefix_pos].view_as(prefix)
