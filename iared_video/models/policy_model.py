"""A backbone cut into D groups of blocks, each group opened by a token-drop policy.

Tokens dropped at group j are physically removed: every later group runs its
blocks on fewer tokens (packed per sample, see ``packed.py``). Class and
distillation tokens are never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.models.backbones import Backbone, BackboneBlock, Embedded, backbone_blocks
from iared_video.models.divided import DividedBlock, DividedLayout, packed_divided_block
from iared_video.models.packed import PackedSeqs
from iared_video.models.policies import MODES, DropPolicy, GroupInput
from iared_video.models.token_ops import class_attention, packed_block

__all__ = ["PolicyModel", "PolicyOutput"]


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


class _TokenState:
    """Tokens still present: each sample's ``[prefix, kept patches]``, packed sample-major in one ``(T, C)``.

    The packed layout carries over from group to group: a drop is one row gather, and a group that drops
    nothing moves nothing. With equal lengths per sample (always at batch 1) the packed tensor is a plain
    ``(B, L, C)`` batch, so the prefix and patch tokens are views instead of gathers.
    """

    def __init__(self, prefix: Tensor, patches: Tensor) -> None:
        batch, num, dim = patches.shape
        self.batch, self.num_patches, self.num_prefix = batch, num, prefix.shape[1]
        self.x = torch.cat([prefix, patches], dim=1).reshape(batch * (self.num_prefix + num), dim)
        self.origin = torch.arange(batch * num, device=patches.device)  # flat index b * N + n of each patch token
        self.seqs = PackedSeqs.from_lengths([self.num_prefix + num] * batch, patches.device)

    def _batched(self) -> Tensor | None:
        """``(B, L, C)`` view of the packed tokens if every sample has the same length, else None."""
        length = self.seqs.uniform_length
        return None if length is None else self.x.view(self.batch, length, self.x.shape[-1])

    def _patch_rows(self) -> Tensor:
        """Packed row of each patch token: the i-th patch token overall, of sample b, follows b + 1 prefixes."""
        rank = torch.arange(self.origin.numel(), device=self.x.device)
        return rank + self.num_prefix * (self.sample_ids() + 1)

    @property
    def tokens(self) -> Tensor:
        """``(T_patch, C)`` patch tokens still present, sample-major (a view at batch 1)."""
        batched = self._batched()
        if batched is None:
            return self.x[self._patch_rows()]
        return batched[:, self.num_prefix:].reshape(-1, self.x.shape[-1])

    @tokens.setter
    def tokens(self, values: Tensor) -> None:
        self.x = self.x.index_put((self._patch_rows(),), values)

    def prefix(self) -> Tensor:
        """``(B, P, C)`` prefix (class/distillation) tokens."""
        batched = self._batched()
        if batched is not None:
            return batched[:, :self.num_prefix]
        starts = self.seqs.cu_seqlens[:-1].long()
        return self.x[starts[:, None] + torch.arange(self.num_prefix, device=starts.device)]

    def scatter(self, values: Tensor, origin: Tensor | None = None) -> Tensor:
        """Values of the tokens at ``origin`` (default: the present patch tokens) -> ``(B, N)`` map, 0 elsewhere."""
        full = values.new_zeros(self.batch * self.num_patches)
        index = self.origin if origin is None else origin
        return full.index_put((index,), values).view(self.batch, self.num_patches)

    def sample_ids(self) -> Tensor:
        """Sample index of each present patch token."""
        return self.origin // self.num_patches

    def drop(self, keep: Tensor) -> None:
        """Remove the patch tokens where ``keep`` (``(T_patch,)`` bool) is False; nothing moves if all stay."""
        rows = self._row_mask(keep).nonzero().squeeze(1)
        if rows.numel() == self.x.shape[0]:
            return
        self.x, self.origin = self.x[rows], self.origin[keep]
        if self.batch == 1:
            lengths = [self.x.shape[0]]
        else:  # the one host sync of a drop besides the gather's
            lengths = (torch.bincount(self.sample_ids(), minlength=self.batch) + self.num_prefix).tolist()
        self.seqs = PackedSeqs.from_lengths(lengths, self.x.device)

    def _row_mask(self, keep: Tensor) -> Tensor:
        """``(T,)`` bool over packed rows: prefix rows always, patch rows where ``keep``."""
        if self._batched() is not None:
            prefix = keep.new_ones(self.batch, self.num_prefix)
            return torch.cat([prefix, keep.view(self.batch, -1)], dim=1).flatten()
        rows = keep.new_ones(self.x.shape[0])
        return rows.index_put((self._patch_rows(),), keep)


class PolicyModel(nn.Module):
    """A backbone with ``embed``, ``blocks`` and ``forward_head`` whose groups open with a token-drop policy.

    Args:
        backbone: ``TimeSformer`` or ``TimmViT``.
        policy: the token-drop policy (a method's learned scorer, a fixed-ratio rule or none).
        num_groups: D; must divide the number of blocks.
    """

    output_type: type[PolicyOutput] = PolicyOutput  # what ``forward(..., return_policy=True)`` fills

    def __init__(self, backbone: Backbone, policy: DropPolicy, num_groups: int) -> None:
        super().__init__()
        depth = len(backbone.blocks)
        if depth % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide the backbone depth {depth}")
        self.backbone, self.policy, self.num_groups = backbone, policy, num_groups
        self.group_size = depth // num_groups

    def group_blocks(self, group: int) -> Sequence[BackboneBlock]:
        """Blocks of group ``group`` (0-based)."""
        return backbone_blocks(self.backbone.blocks[group * self.group_size:(group + 1) * self.group_size])

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
        state = _TokenState(emb.prefix, emb.patches)
        out = self.output_type(logits=x.new_empty(0), grid=emb.grid)
        for group in range(self.num_groups):
            self._decide(group, modes[group], emb, state, out, record=return_policy)
            self._run_group(group, state, emb.grid)
        out.logits = self.backbone.forward_head(state.prefix())
        return out if return_policy else out.logits

    def _check_modes(self, modes: Sequence[str] | None) -> list[str]:
        modes = list(modes) if modes is not None else ["greedy"] * self.num_groups
        if len(modes) != self.num_groups or any(m not in MODES for m in modes):
            raise ValueError(f"modes must be {self.num_groups} values from {MODES}, got {modes}")
        return modes

    def _decide(self, group: int, mode: str, emb: Embedded, state: _TokenState, out: PolicyOutput,
                record: bool = True) -> None:
        """Score the present tokens, record maps (``record``: the caller asked for them), and drop the
        rejected ones."""
        previous = out.keep[-1] if out.keep else None
        if not self.policy.acts_on(group) or mode == "keep_all":
            if not record:
                return
            out.scores.append(state.scatter(torch.ones_like(state.origin, dtype=state.x.dtype)))
            out.keep.append(previous if previous is not None else out.scores[-1].bool())
            out.log_probs.append(None)
            return
        inp = GroupInput(group, state.tokens, state.batch, state.num_patches, emb,
                         partial(self._class_attention, emb), state.seqs, state.num_prefix)
        scores = self.policy.score(inp)
        keep = self.policy.keep(inp, scores, mode)
        if not record:
            state.drop(keep)
            return
        out.scores.append(state.scatter(scores))
        out.log_probs.append(self._log_prob(scores, keep, state) if mode == "sample" else None)
        state.drop(keep)
        out.keep.append(state.scatter(torch.ones_like(state.origin, dtype=torch.bool)))

    def _class_attention(self, emb: Embedded, block: int) -> Tensor:
        """``(B, N)`` head-averaged class attention over the patch tokens of ``block``, every token present."""
        tokens = torch.cat([emb.prefix, emb.patches], dim=1)
        return class_attention(self.backbone.blocks, tokens, block)[:, emb.prefix.shape[1]:]

    @staticmethod
    def _log_prob(scores: Tensor, keep: Tensor, state: _TokenState) -> Tensor:
        """Per-sample ``sum_i log(I u + (1 - I)(1 - u))`` over the tokens present at this group."""
        u = keep.to(scores.dtype)
        token_logp = torch.log((scores * u + (1 - scores) * (1 - u)).clamp_min(1e-8))
        sample = state.sample_ids()
        return token_logp.new_zeros(state.batch).index_add(0, sample, token_logp)

    def _run_group(self, group: int, state: _TokenState, grid: tuple[int, int, int]) -> None:
        """Run one group's blocks on the packed tokens (the layout carries over: no repacking).

        Divided space-time blocks also need the temporal and spatial sequences of the kept tokens: one
        ``DividedLayout`` per group, shared by its blocks.
        """
        blocks = self.group_blocks(group)
        if blocks and isinstance(blocks[0], DividedBlock):
            layout = DividedLayout.build(state.origin, state.batch, grid, state.seqs)
            for block in blocks:  # a backbone's blocks are all of one kind
                state.x = packed_divided_block(cast(DividedBlock, block), state.x, state.seqs, layout)
            return
        for block in blocks:
            state.x = packed_block(cast(Block, block), state.x, state.seqs)
