"""Gumbel IA-RED^2 (the paper's Appendix D): the interpreters trained end-to-end through a straight-through
Gumbel decision instead of REINFORCE.

Selected by ``METHOD.NAME iared_gumbel``: IA-RED^2's ``IARED`` settings plus its own ``GUMBEL`` ones. In
``"sample"`` mode each present token keeps a hard 0/1 Gumbel-Bernoulli gate whose soft value carries gradients;
kept tokens are scaled by their gate (1 forward), so cross-entropy reaches the interpreters. One ``"gumbel"``
stage trains everything with every group sampling; the loss (``gumbel_loss``) adds a keep-ratio
MSE (group j targets rho^j).
Inference and FLOPs are IA-RED^2's (threshold rule, interpreter cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.methods import register
from iared_video.methods.base import Method
from iared_video.methods.dynamicvit.losses import ratio_loss
from iared_video.methods.iared import IARED2
from iared_video.methods.iared.policy import InterpreterPolicy
from iared_video.methods.stages import Stage, StagePlan, last_drop_index
from iared_video.methods.steps import autocast, top1_err
from iared_video.models.backbones import Backbone
from iared_video.models.policies import GroupInput
from iared_video.models.policy_model import PolicyModel, PolicyOutput

__all__ = ["GumbelIARED2", "GumbelInterpreterPolicy", "GumbelIARED", "GumbelOutput", "gumbel_bernoulli",
           "GumbelOptions", "gumbel_loss", "gumbel_step"]


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


class GumbelIARED(PolicyModel):
    """IA-RED^2 whose sampled decisions scale the kept tokens by their straight-through gate."""

    output_type = GumbelOutput

    def _decide(self, group, mode, emb, state, out, record=True) -> None:
        present = state.origin  # ``drop`` replaces it: the tokens the policy decides on
        super()._decide(group, mode, emb, state, out, record)
        gate = self.policy.pop_gate() if isinstance(self.policy, GumbelInterpreterPolicy) else None
        if gate is None:
            return
        kept = gate.detach() > 0.5
        state.tokens = state.tokens * gate[kept].unsqueeze(-1).to(state.tokens.dtype)
        if record:
            out.gates.append(state.scatter(gate, present))


def gumbel_loss(out: GumbelOutput, labels: Tensor, keep_rate: float,
                ratio_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy + ``ratio_weight`` x keep-ratio MSE of the gates (``ratio_loss``: group j targets rho^j).

    Args:
        out: the model's output (``logits`` and the ``(B, N)`` straight-through ``gates`` of sampled groups).
        labels: ``(B,)`` classes.
        keep_rate: rho.
        ratio_weight: weight of the keep-ratio term (0: cross-entropy alone).
    """
    terms = {"ce": F.cross_entropy(out.logits.float(), labels)}
    no_gates = out.logits.new_zeros((), dtype=torch.float32)
    terms["ratio"] = ratio_loss([g.float() for g in out.gates], keep_rate) if out.gates else no_gates
    return terms["ce"] + ratio_weight * terms["ratio"], terms


@dataclass(frozen=True)
class GumbelOptions:
    """The Gumbel loss's settings: keep-ratio target rho (group j: rho^j) and the weight of its MSE."""

    keep_rate: float = 0.7
    ratio_weight: float = 2.0


def gumbel_step(net: nn.Module, x: Tensor, y: Tensor, modes: list[str], args: GumbelOptions,
                amp_dtype: torch.dtype | None = None) -> tuple[Tensor, dict]:
    """Straight-through Gumbel IA-RED^2: cross-entropy + keep-ratio MSE of the sampled gates."""
    with autocast(x.device, amp_dtype):
        out = net(x, return_policy=True, modes=modes)
    loss, terms = gumbel_loss(out, y, args.keep_rate, args.ratio_weight)
    return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                  "keep_ratio": out.keep_ratio.mean().item(), "top1_err": top1_err(out.logits, y)}


class GumbelIARED2(IARED2):
    """The Gumbel variant: IA-RED^2's policy, FLOPs and benchmark; its own model, stage and loss."""

    name, policy_type, config_nodes, benchmarked = "iared_gumbel", GumbelInterpreterPolicy, ("IARED", "GUMBEL"), False
    optimizer, base_lr = Method.optimizer, Method.base_lr  # SOLVER.* for the one stage

    def build_policy(self, cfg: CfgNode, dim: int) -> InterpreterPolicy:
        p = cfg.IARED
        return GumbelInterpreterPolicy(dim, p.NUM_GROUPS, p.THRESHOLD, p.INTERPRETER_HEADS, p.INTERPRETER_DIM,
                                       p.FIRST_DROP_GROUP - 1, p.INTERPRETER_INIT_SCORE, tau=cfg.GUMBEL.TAU,
                                       last_group=last_drop_index(cfg), hidden=p.INTERPRETER_HIDDEN,
                                       input_kind=p.INTERPRETER_INPUT, decision=p.DECISION)

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return GumbelIARED(backbone, self.build_policy(cfg, backbone.embed_dim), cfg.IARED.NUM_GROUPS)

    def stages(self, plan: StagePlan) -> list[Stage]:
        return [Stage("gumbel", 0, plan.max_epoch, mode="sample")] if plan.max_epoch > 0 else []

    def step(self, run, x: Tensor, y: Tensor, ctx) -> tuple[Tensor, dict]:
        return gumbel_step(run.net, x, y, run.modes, ctx.args.options, ctx.args.amp_dtype)

    def step_options(self, cfg: CfgNode) -> GumbelOptions:  # type: ignore[override]  # not IA-RED^2's reward
        return GumbelOptions(cfg.GUMBEL.KEEP_RATE, cfg.GUMBEL.RATIO_WEIGHT)

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        errors = []
        g = cfg.GUMBEL
        if g.TAU <= 0:
            errors.append(f"GUMBEL.TAU must be > 0, got {g.TAU}")
        if not 0.0 < g.KEEP_RATE <= 1.0:
            errors.append(f"GUMBEL.KEEP_RATE must lie in (0, 1], got {g.KEEP_RATE}")
        if not 0.0 <= g.RATIO_WEIGHT < float("inf"):
            errors.append(f"GUMBEL.RATIO_WEIGHT must be a finite number >= 0, got {g.RATIO_WEIGHT}")
        return errors


register(GumbelIARED2())
