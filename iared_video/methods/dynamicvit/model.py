"""DynamicViT (Rao et al., NeurIPS 2021) on the IA-RED^2 backbones (the method: ``method.py``).

DynamicViT puts a light prediction module before the blocks at ``prune_locations``. Stage ``s`` (1-based)
scores the patch tokens still present and keeps ``floor(rho^s * N)`` of them (N: the input's patch tokens), as
the official code's ``int(N * rho^s)``.

* Training (``model.train()``): every token stays in the tensor. The predictor's keep/drop log-probabilities
  give a hard straight-through Gumbel-softmax decision, multiplied through the stages, and a masked softmax
  stops dropped tokens from influencing the others (each token still attends to itself); it runs in float32
  with the official epsilon whatever the autocast dtype.
  ``losses.dynamicvit_loss`` adds a keep-ratio MSE per stage and KL / token distillation from a frozen
  dense teacher.
  The trainer follows the official recipe: ``DYNAMICVIT.FROZEN_PARAMS`` (cls_token, pos_embed, time_embed) stay
  frozen, and the backbone learning rate is 0 for ``DYNAMICVIT.BACKBONE_HOLD_EPOCHS``, then
  ``min(BACKBONE_LR_SCALE x BASE_LR, predictor lr)`` (``DYNAMICVIT.BACKBONE_LR_RULE capped``).
* Inference (``model.eval()``): the top-k tokens by keep probability are physically removed and the packed
  block stack of ``PolicyModel`` runs on equal-length batches (batched SDPA).

``DynamicViT`` is a ``PolicyModel`` whose groups are the block spans between prune locations: group 0 (before the
first location) keeps everything, group ``s`` opens with predictor ``s``. ``PolicyOutput`` therefore has
``len(prune_locations) + 1`` entries, and FLOPs, tester, heatmap and benchmark code work unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.models.backbones import Backbone, BackboneBlock, backbone_blocks
from iared_video.models.flops import Count, linear_macs, norm_macs
from iared_video.models.policies import MODES, DropPolicy, GroupInput
from iared_video.models.policy_model import PolicyModel, PolicyOutput
from iared_video.models.token_ops import block_forward

__all__ = ["TokenPredictor", "DynamicViTPolicy", "DynamicViT", "DynamicViTOutput", "masked_block", "make_teacher",
           "keep_count", "predictor_macs"]


# ----------------------------------------------------------------------------- prediction module


class TokenPredictor(nn.Module):
    """Keep/drop log-probabilities of each patch token from its local feature and a global feature.

    ``z = GELU(Linear(LN(x)))`` split in half: local ``z_l`` per token, global ``z_g`` = mean of the other half
    over the tokens currently kept; ``MLP([z_l, z_g]) -> log_softmax`` over (keep, drop).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.local_global = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.decide = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim // 4), nn.GELU(),
                                    nn.Linear(dim // 4, 2))

    def forward(self, tokens: Tensor, keep: Tensor | None = None) -> Tensor:
        """``(B, n, C)`` tokens and optional ``(B, n)`` keep mask -> ``(B, n, 2)`` log-probs (keep, drop)."""
        z = self.local_global(tokens)
        local, glob = z.chunk(2, dim=-1)
        if keep is None:
            glob = glob.mean(dim=1, keepdim=True)
        else:
            w = keep.unsqueeze(-1).to(z.dtype)
            glob = (glob * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1e-6)
        return self.decide(torch.cat([local, glob.expand_as(local)], dim=-1)).log_softmax(-1)


def predictor_macs(predictor: nn.Module, num_scored: Count) -> Count:
    """A prediction module's cost: every LayerNorm and linear layer on each scored token (the masked global
    mean and the concat are element-wise, hence free)."""
    per_token = sum(linear_macs(m) for m in predictor.modules())
    norms = sum(norm_macs(m, num_scored) for m in predictor.modules() if isinstance(m, nn.LayerNorm))
    return num_scored * per_token + norms


KEEP_COUNT_DECIMALS = 6  # rho^s * N is rounded to this many decimals before the floor (0.7**2 * 100 -> 49, not 48)


def keep_count(keep_rate: float, stage: int, num_patches: int) -> int:
    """Tokens kept after stage ``stage`` (1-based): ``floor(rho^s * N)`` as the official code, at least 1."""
    return max(1, math.floor(round(keep_rate ** stage * int(num_patches), KEEP_COUNT_DECIMALS)))


class DynamicViTPolicy(DropPolicy):
    """One ``TokenPredictor`` per pruning stage; group ``s >= 1`` keeps the top ``floor(rho^s N)`` tokens."""

    def __init__(self, dim: int, num_stages: int, keep_rate: float = 0.7) -> None:
        super().__init__()
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must lie in (0, 1], got {keep_rate}")
        self.keep_rate = keep_rate
        self.predictors = nn.ModuleList(TokenPredictor(dim) for _ in range(num_stages))

    def acts_on(self, group: int) -> bool:
        return group >= 1

    def score(self, inp: GroupInput) -> Tensor:
        """Keep probabilities of the present tokens (equal counts per sample at inference)."""
        tokens = inp.tokens.view(inp.batch, -1, inp.tokens.shape[-1])
        return self.predictors[inp.group - 1](tokens)[..., 0].exp().flatten()

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode not in MODES:
            raise ValueError(f"unknown policy mode {mode!r}; expected one of {MODES}")
        if mode == "keep_all":
            return torch.ones_like(scores, dtype=torch.bool)
        per_sample = scores.view(inp.batch, -1)
        k = min(keep_count(self.keep_rate, inp.group, inp.num_patches), int(per_sample.shape[1]))
        top = per_sample.topk(k, dim=1).indices
        ones = torch.ones_like(top, dtype=torch.bool)  # a tensor source: fvcore's tracer rejects a bool scalar
        return torch.zeros_like(per_sample, dtype=torch.bool).scatter_(1, top, ones).flatten()


# ----------------------------------------------------------------------------- masked dense training path


def masked_block(block: Block, x: Tensor, keep: Tensor) -> Tensor:
    """A timm ``Block`` on ``(B, L, C)`` tokens where keys with ``keep == 0`` are masked out of attention."""
    return block_forward(block, x, keep=keep)[0]


@dataclass
class DynamicViTOutput(PolicyOutput):
    """Training-mode output: ``PolicyOutput`` plus what ``dynamicvit_loss`` needs.

    Attributes:
        masks: per pruning stage ``(B, N)`` straight-through hard keep decisions (1 kept, 0 dropped),
            multiplied through the stages.
        patch_tokens: ``(B, N, C)`` final patch tokens after the backbone's final norm.
    """

    masks: list[Tensor] = field(default_factory=list)
    patch_tokens: Tensor | None = None


def make_teacher(backbone: Backbone) -> Backbone:
    """A frozen eval-mode copy of the dense backbone."""
    teacher = copy.deepcopy(backbone).eval()
    return teacher.requires_grad_(False)


class DynamicViT(PolicyModel):
    """DynamicViT around a backbone with ``embed``, ``blocks`` and ``forward_head``.

    Args:
        backbone: ``TimeSformer`` or ``TimmViT``.
        prune_locations: indices of the blocks each predictor runs before (strictly increasing, in (0, depth)).
        keep_rate: rho; stage s keeps ``floor(rho^s N)`` patch tokens.
        gumbel_tau: temperature of the training-time Gumbel-softmax.
    """

    policy: DynamicViTPolicy

    def __init__(self, backbone: Backbone, prune_locations: Sequence[int], keep_rate: float = 0.7,
                 gumbel_tau: float = 1.0) -> None:
        nn.Module.__init__(self)
        locs, depth = list(prune_locations), len(backbone.blocks)
        if not locs or locs != sorted(set(locs)) or locs[0] <= 0 or locs[-1] >= depth:
            raise ValueError(f"prune_locations must increase strictly within (0, {depth}), got {locs}")
        self.backbone = backbone
        self.policy = DynamicViTPolicy(backbone.embed_dim, len(locs), keep_rate)
        self.bounds = [0, *locs, depth]
        self.num_groups, self.gumbel_tau = len(locs) + 1, gumbel_tau

    @property
    def prune_locations(self) -> list[int]:
        return self.bounds[1:-1]

    def group_blocks(self, group: int) -> Sequence[BackboneBlock]:
        return backbone_blocks(self.backbone.blocks[self.bounds[group]:self.bounds[group + 1]])

    def forward(self, x: Tensor, return_policy: bool = False,
                modes: Sequence[str] | None = None) -> Tensor | PolicyOutput:
        """Training mode: masked dense forward (``DynamicViTOutput``); eval: real removal (``PolicyOutput``)."""
        if not self.training:
            return super().forward(x, return_policy, modes)
        out = self.forward_train(x)
        return out if return_policy else out.logits

    def forward_train(self, x: Tensor) -> DynamicViTOutput:
        """All tokens stay; Gumbel decisions mask attention from the predictors' stages on."""
        emb = self.backbone.embed(x)
        p, (batch, num, _) = emb.prefix.shape[1], emb.patches.shape
        tokens = torch.cat([emb.prefix, emb.patches], dim=1)
        mask = tokens.new_ones(batch, num)
        out = DynamicViTOutput(logits=x.new_empty(0), grid=emb.grid)
        self._record(out, mask, mask, None)
        for group in range(1, self.num_groups + 1):
            if group > 1:
                mask = self._stage_mask(group - 1, tokens[:, p:], mask, out)
            keep = torch.cat([mask.new_ones(batch, p), mask], dim=1)
            for block in backbone_blocks(self.backbone.blocks[self.bounds[group - 1]:self.bounds[group]]):
                tokens = masked_block(cast(Block, block), tokens, keep)  # the masked path runs timm blocks only
        out.logits = self.backbone.forward_head(tokens[:, :p])
        out.patch_tokens = self.backbone.norm(tokens[:, p:])
        return out

    def _stage_mask(self, stage: int, patches: Tensor, mask: Tensor, out: DynamicViTOutput) -> Tensor:
        """Predictor ``stage`` (1-based) -> new straight-through mask (previous mask multiplied in)."""
        log_probs = self.policy.predictors[stage - 1](patches, mask)
        hard = F.gumbel_softmax(log_probs, tau=self.gumbel_tau, hard=True)[..., 0]
        new_mask = hard * mask
        self._record(out, new_mask, log_probs[..., 0].exp() * mask, new_mask)
        return new_mask

    @staticmethod
    def _record(out: DynamicViTOutput, mask: Tensor, scores: Tensor, st_mask: Tensor | None) -> None:
        out.scores.append(scores.detach())
        out.keep.append(mask.detach() > 0.5)
        out.log_probs.append(None)
        if st_mask is not None:
            out.masks.append(st_mask)
