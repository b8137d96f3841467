"""DynamicViT (Rao et al., NeurIPS 2021) on the IA-RED^2 backbones, plus a Gumbel IA-RED^2 interpreter.

DynamicViT puts a light prediction module before the blocks at ``prune_locations``. Stage ``s`` (1-based)
scores the patch tokens still present and keeps ``floor(rho^s * N)`` of them (N: the input's patch tokens), as
the official code's ``int(N * rho^s)``.

* Training (``model.train()``): every token stays in the tensor. The predictor's keep/drop log-probabilities
  give a hard straight-through Gumbel-softmax decision, multiplied through the stages, and a masked softmax
  stops dropped tokens from influencing the others (each token still attends to itself); it runs in float32
  with the official epsilon whatever the autocast dtype.
  ``dynamicvit_loss`` adds a keep-ratio MSE per stage and KL / token distillation from a frozen dense teacher.
  The trainer follows the official recipe: ``DYNAMICVIT.FROZEN_PARAMS`` (cls_token, pos_embed, time_embed) stay
  frozen, and the backbone learning rate is 0 for ``DYNAMICVIT.BACKBONE_HOLD_EPOCHS``, then
  ``min(BACKBONE_LR_SCALE x BASE_LR, predictor lr)`` (``DYNAMICVIT.BACKBONE_LR_RULE capped``).
* Inference (``model.eval()``): the top-k tokens by keep probability are physically removed and the packed
  block stack of ``IARED`` runs on equal-length batches (batched SDPA).

``DynamicViT`` is an ``IARED`` whose groups are the block spans between prune locations: group 0 (before the
first location) keeps everything, group ``s`` opens with predictor ``s``. ``PolicyOutput`` therefore has
``len(prune_locations) + 1`` entries, and FLOPs, tester, heatmap and benchmark code work unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iared_video.models.iared import IARED, PolicyOutput
from iared_video.models.policies import MODES, DropPolicy, GroupInput, InterpreterPolicy

__all__ = ["TokenPredictor", "DynamicViTPolicy", "DynamicViT", "DynamicViTOutput", "LossWeights",
           "masked_softmax", "masked_block", "dense_forward", "ratio_loss", "token_distill_loss",
           "dynamicvit_loss", "make_teacher", "keep_count", "GumbelInterpreterPolicy", "GumbelIARED",
           "GumbelOutput", "gumbel_loss", "gumbel_bernoulli"]


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


MASKED_SOFTMAX_EPS = 1e-6  # the official DynamicViT epsilon


def masked_softmax(logits: Tensor, keep: Tensor, eps: float = MASKED_SOFTMAX_EPS) -> Tensor:
    """Softmax over the last axis restricted to kept keys plus the diagonal, computed in float32.

    As the official code: ``(w + eps / L) / (sum(w) + eps)`` with ``w = exp(logit - max) * allowed``, so a row
    never divides by zero; the result has the dtype of ``logits``.

    Args:
        logits: ``(B, H, L, L)`` attention logits.
        keep: ``(B, L)`` key keep mask in [0, 1] (straight-through values carry gradients).
        eps: the stabilising epsilon.
    """
    length = logits.shape[-1]
    eye = torch.eye(length, dtype=torch.float32, device=logits.device)
    allowed = keep[:, None, None, :].float()
    allowed = allowed + (1.0 - allowed) * eye  # a token always sees itself
    scores = logits.float()
    weights = (scores - scores.amax(-1, keepdim=True)).exp() * allowed
    return ((weights + eps / length) / (weights.sum(-1, keepdim=True) + eps)).to(logits.dtype)


def _masked_attention(attn: nn.Module, x: Tensor, keep: Tensor) -> Tensor:
    batch, length, dim = x.shape
    qkv = attn.qkv(x).reshape(batch, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = attn.attn_drop(masked_softmax((q * attn.scale) @ k.transpose(-2, -1), keep))
    out = attn.norm((probs @ v).transpose(1, 2).reshape(batch, length, dim))
    return attn.proj_drop(attn.proj(out))


def masked_block(block: nn.Module, x: Tensor, keep: Tensor) -> Tensor:
    """A timm ``Block`` on ``(B, L, C)`` tokens where keys with ``keep == 0`` are masked out of attention."""
    x = x + block.drop_path1(block.ls1(_masked_attention(block.attn, block.norm1(x), keep)))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


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


def dense_forward(backbone: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Dense backbone forward: logits and normalised final patch tokens ``(B, N, C)`` (the teacher)."""
    emb = backbone.embed(x)
    tokens = torch.cat([emb.prefix, emb.patches], dim=1)
    for block in backbone.blocks:
        tokens = block(tokens)
    p = emb.prefix.shape[1]
    return backbone.forward_head(tokens[:, :p]), backbone.norm(tokens[:, p:])


def make_teacher(backbone: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of the dense backbone."""
    teacher = copy.deepcopy(backbone).eval()
    return teacher.requires_grad_(False)


class DynamicViT(IARED):
    """DynamicViT around a backbone with ``embed``, ``blocks`` and ``forward_head``.

    Args:
        backbone: ``TimeSformer`` or ``TimmViT``.
        prune_locations: indices of the blocks each predictor runs before (strictly increasing, in (0, depth)).
        keep_rate: rho; stage s keeps ``floor(rho^s N)`` patch tokens.
        gumbel_tau: temperature of the training-time Gumbel-softmax.
    """

    def __init__(self, backbone: nn.Module, prune_locations: Sequence[int], keep_rate: float = 0.7,
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

    def group_blocks(self, group: int) -> Sequence[nn.Module]:
        return self.backbone.blocks[self.bounds[group]:self.bounds[group + 1]]

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
            for block in self.backbone.blocks[self.bounds[group - 1]:self.bounds[group]]:
                tokens = masked_block(block, tokens, keep)
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


# ----------------------------------------------------------------------------- losses


@dataclass
class LossWeights:
    """Weights and target of the DynamicViT objective."""

    keep_rate: float = 0.7
    ratio: float = 2.0
    distill: float = 0.5
    token_distill: float = 0.5


def ratio_loss(masks: Sequence[Tensor], keep_rate: float) -> Tensor:
    """Mean over stages s of the batch mean of ``(kept_fraction_b - rho^s)^2``."""
    terms = [((m.mean(dim=1) - keep_rate ** (s + 1)) ** 2).mean() for s, m in enumerate(masks)]
    return torch.stack(terms).mean()


def token_distill_loss(student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
    """MSE between ``(B, N, C)`` student and teacher tokens over the kept tokens (``keep`` ``(B, N)``)."""
    w = (keep.detach() > 0.5).to(student.dtype).unsqueeze(-1)
    sq = ((student - teacher) ** 2 * w).sum()
    return sq / (w.sum() * student.shape[-1]).clamp_min(1.0)


def dynamicvit_loss(out: DynamicViTOutput, labels: Tensor, teacher_logits: Tensor, teacher_tokens: Tensor,
                    weights: LossWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """CE + ratio MSE + KL(teacher || student) + token distillation, weighted; returns total and terms."""
    terms = {
        "ce": F.cross_entropy(out.logits.float(), labels),
        "ratio": ratio_loss(out.masks, weights.keep_rate),
        "kl": F.kl_div(out.logits.float().log_softmax(-1), teacher_logits.float().log_softmax(-1),
                       reduction="batchmean", log_target=True),
        "token": token_distill_loss(out.patch_tokens.float(), teacher_tokens.float(), out.masks[-1]),
    }
    total = (terms["ce"] + weights.ratio * terms["ratio"] + weights.distill * terms["kl"]
             + weights.token_distill * terms["token"])
    return total, terms


# ----------------------------------------------------------------------------- Gumbel IA-RED^2 (Appendix D)


def gumbel_bernoulli(probs: Tensor, tau: float = 1.0) -> Tensor:
    """Straight-through Gumbel sample of Bernoulli(``probs``): hard 0/1 forward, soft gradient backward."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    logits = p.log() - (-p).log1p()
    u = torch.rand_like(p).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((logits + u.log() - (-u).log1p()) / tau)  # logistic noise = difference of two Gumbels
    return (soft > 0.5).to(soft.dtype) + soft - soft.detach()


class GumbelInterpreterPolicy(InterpreterPolicy):
    """Interpreter whose ``"sample"`` mode is a straight-through Gumbel decision (differentiable through CE)."""

    def __init__(self, *args, tau: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tau = tau
        self._gate: Tensor | None = None

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode != "sample":
            return super().keep(inp, scores, mode)
        self._gate = gumbel_bernoulli(scores, self.tau)
        return self._gate.detach() > 0.5

    def pop_gate(self) -> Tensor | None:
        """The straight-through gate (1 kept, 0 dropped forward) of every token the last ``"sample"`` decided."""
        gate, self._gate = self._gate, None
        return gate


@dataclass
class GumbelOutput(PolicyOutput):
    """``PolicyOutput`` plus, per group in ``"sample"`` mode, the ``(B, N)`` straight-through keep gates.

    A gate map is 0 for tokens dropped at or before its group, so ``gates[j].mean(1)`` is the fraction of
    patch tokens kept after group j, differentiable with respect to interpreter j.
    """

    gates: list[Tensor] = field(default_factory=list)


class GumbelIARED(IARED):
    """IA-RED^2 whose sampled decisions scale the kept tokens by their straight-through gate."""

    output_type = GumbelOutput

    def _decide(self, group, mode, emb, state, out) -> None:
        present = state.origin  # ``drop`` replaces it: the tokens the policy decides on
        super()._decide(group, mode, emb, state, out)
        gate = self.policy.pop_gate() if isinstance(self.policy, GumbelInterpreterPolicy) else None
        if gate is None:
            return
        kept = gate.detach() > 0.5
        state.tokens = state.tokens * gate[kept].unsqueeze(-1).to(state.tokens.dtype)
        out.gates.append(state.scatter(gate, present))


def gumbel_loss(out: GumbelOutput, labels: Tensor, keep_rate: float, ratio_weight: float
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy + ``ratio_weight`` x keep-ratio MSE of the gates (``ratio_loss``: group j targets rho^j)."""
    terms = {"ce": F.cross_entropy(out.logits.float(), labels)}
    no_gates = out.logits.new_zeros((), dtype=torch.float32)
    terms["ratio"] = ratio_loss([g.float() for g in out.gates], keep_rate) if out.gates else no_gates
    return terms["ce"] + ratio_weight * terms["ratio"], terms
