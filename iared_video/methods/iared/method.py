"""IA-RED^2 (Pan et al., NeurIPS 2021): multi-head interpreters drop patch tokens at each group's entry.

Policy: ``policy.InterpreterPolicy`` in ``models.policy_model.PolicyModel``. Training: Alg. 1, per group an
interpreter stage (self-critical REINFORCE, ``reinforce_step``; only that group's interpreter trains) then a
backbone stage (cross-entropy).
FLOPs: the interpreter's ``F_q`` on the scored tokens, ``F_k`` on the policy token and the per-head dot
products. Benchmark: the trained threshold rule, and ``ControlledKeepPolicy`` (the same interpreters keeping
a set fraction of tokens per sample) at each keep target.
"""

from __future__ import annotations

from typing import cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.config.choices import KEEP_SCHEDULES, OPTIMIZERS
from iared_video.config.runtime import is_video
from iared_video.methods import method_for_cfg, register
from iared_video.methods.base import BenchContext, Count, Method, Variant
from iared_video.methods.iared.interpreter import MultiHeadInterpreter, interpreter_macs
from iared_video.methods.iared.policy import DECISIONS, INTERPRETER_INPUTS, InterpreterPolicy
from iared_video.methods.iared.reinforce import (
    REINFORCE_BASELINES,
    REWARD_NORMALIZERS,
    REWARD_OUTCOMES,
    REWARDS,
    RewardOptions,
    leave_one_out_advantage,
    outcome,
    policy_gradient_loss,
    reward,
    reward_denominator,
    self_critical_advantage,
)
from iared_video.methods.stages import Stage, StagePlan, last_drop_index
from iared_video.methods.steps import autocast, ce_step, top1_err
from iared_video.models.backbones import Backbone
from iared_video.models.optim import build_optimizer
from iared_video.models.policies import GroupInput, topk_per_sample
from iared_video.models.policy_model import PolicyModel, PolicyOutput
from iared_video.models.weights import load_pretrained

__all__ = ["IARED2", "RewardOptions", "reinforce_step", "ControlledKeepPolicy", "topk_per_sample", "threshold_policy"]


def reinforce_step(net: nn.Module, greedy_net: nn.Module, x: Tensor, y: Tensor, modes: list[str], group: int,
                   args: RewardOptions, amp_dtype: torch.dtype | None = None) -> tuple[Tensor, dict]:
    """REINFORCE loss of interpreter ``group`` (Alg. 1 step a).

    ``net`` samples at ``group``, ``args.reinforce_samples`` decisions per input (the batch repeated, input-major).
    The baseline is the greedy decision ``u_hat`` of ``greedy_net`` (same weights, no DDP; the paper's
    self-critical baseline) or, with ``args.reinforce_baseline == "leave_one_out"``, the input's other samples.
    """
    k = args.reinforce_samples
    xs, ys = (x.repeat_interleave(k, 0), y.repeat_interleave(k, 0)) if k > 1 else (x, y)
    with autocast(x.device, amp_dtype):
        out = net(xs, return_policy=True, modes=modes)
    r_sample = _reward_of(out, ys, group, args)
    stats = {"reward": r_sample.mean().item(), "keep_ratio": out.keep_ratio.mean().item(),
             "top1_err": top1_err(out.logits, ys)}
    if args.reinforce_baseline == "leave_one_out":
        advantage = leave_one_out_advantage(r_sample, k)
    else:
        greedy_modes = ["greedy" if m == "sample" else m for m in modes]
        with torch.no_grad(), autocast(x.device, amp_dtype):
            base = greedy_net(x, return_policy=True, modes=greedy_modes)
        r_greedy = _reward_of(base, y, group, args)
        advantage = self_critical_advantage(r_sample, r_greedy.repeat_interleave(k))
        stats |= {"greedy_reward": r_greedy.mean().item(), "greedy_keep_ratio": base.keep_ratio.mean().item()}
    loss = policy_gradient_loss(advantage, out.log_probs[group].float())
    return loss, {"loss": loss.item(), "advantage": advantage.mean().item(), **stats}


def _reward_of(out: PolicyOutput, labels: Tensor, group: int, args: RewardOptions) -> Tensor:
    """``(B,)`` reward of each row of ``out`` for interpreter ``group``'s decisions (Eq. 2)."""
    kept, denominator = out.keep[group].sum(1), reward_denominator(out.keep, group, args.reward_normalizer)
    correct = outcome(out.logits, labels, args.reward_outcome)
    return reward(kept, denominator, correct, args.tau, args.reward_kind)


def threshold_policy(source: InterpreterPolicy, threshold: float) -> InterpreterPolicy:
    """An ``InterpreterPolicy`` sharing ``source``'s interpreters with its own threshold."""
    policy = InterpreterPolicy.__new__(InterpreterPolicy)
    nn.Module.__init__(policy)
    policy.share(source, threshold)
    policy.decision = "threshold"  # a threshold sweep: the rule the threshold belongs to
    return policy


class ControlledKeepPolicy(InterpreterPolicy):
    """The real interpreters (same cost), but each sample keeps the top-k scored tokens, k set per sample.

    ``set_ratios(r)`` fixes the final keep ratio of each sample. With ``schedule="geometric"`` the j-th group
    that drops (of D' that do, from ``first_group`` on) keeps a cumulative ``r ** (j / D')`` of the patches
    (hierarchical, as a trained IA-RED^2); with ``"first"`` every drop happens at the first group that drops.
    """

    def __init__(self, source: InterpreterPolicy, schedule: str = "geometric") -> None:
        nn.Module.__init__(self)
        if schedule not in KEEP_SCHEDULES:
            raise ValueError(f"schedule must be {' or '.join(map(repr, KEEP_SCHEDULES))}, got {schedule!r}")
        self.share(source, source.threshold)
        self.schedule = schedule
        self.ratios: Tensor | None = None

    def set_ratios(self, ratios: Tensor) -> None:
        """Final keep ratio per sample, ``(B,)`` in (0, 1]."""
        self.ratios = ratios.clamp(1e-6, 1.0).double().cpu()

    def target_counts(self, group: int, num_patches: int) -> Tensor:
        """``(B,)`` patch tokens kept after ``group`` (at least 1)."""
        acting = self.last_group - self.first_group + 1
        power = (group - self.first_group + 1) / acting if self.schedule == "geometric" else 1.0
        assert self.ratios is not None, "call set_ratios() first"
        return (self.ratios ** power * num_patches).round().clamp_min(1).long()

    def keep(self, inp: GroupInput, scores: Tensor, mode: str) -> Tensor:
        if mode != "greedy":
            return super().keep(inp, scores, mode)
        if self.ratios is None or self.ratios.numel() != inp.batch:
            raise ValueError("call set_ratios() with one ratio per sample before the forward")
        present = inp.counts  # what the earlier groups kept: their targets
        wanted = torch.minimum(self.target_counts(inp.group, inp.num_patches).to(present.device), present)
        return topk_per_sample(scores, present, wanted, inp.uniform_count)


def _group_errors(p: CfgNode, depth: int) -> list[str]:
    """Group count and the first and last drop groups against each other and the backbone's depth."""
    errors = []
    if not 1 <= p.FIRST_DROP_GROUP <= p.NUM_GROUPS:
        errors.append(f"IARED.FIRST_DROP_GROUP={p.FIRST_DROP_GROUP} must lie in [1, IARED.NUM_GROUPS={p.NUM_GROUPS}]")
    last = p.LAST_DROP_GROUP
    if last and not p.FIRST_DROP_GROUP <= last <= p.NUM_GROUPS:
        errors.append(f"IARED.LAST_DROP_GROUP={last} must be 0 (every group) or lie in [IARED.FIRST_DROP_GROUP="
                      f"{p.FIRST_DROP_GROUP}, IARED.NUM_GROUPS={p.NUM_GROUPS}]")
    if depth % p.NUM_GROUPS:
        errors.append(f"IARED.NUM_GROUPS={p.NUM_GROUPS} must divide the model depth {depth}")
    return errors


class IARED2(Method):
    """IA-RED^2: the interpreter policy, Alg. 1's curriculum, REINFORCE."""

    name, policy_type, synthetic_config, benchmarked = "iared", InterpreterPolicy, "iared", True
    config_nodes: tuple[str, ...] = ("IARED",)
    choices = {"IARED.REWARD": REWARDS, "IARED.REWARD_NORMALIZER": REWARD_NORMALIZERS,
               "IARED.REWARD_OUTCOME": REWARD_OUTCOMES, "IARED.REINFORCE_BASELINE": REINFORCE_BASELINES,
               "IARED.INTERPRETER_INPUT": INTERPRETER_INPUTS, "IARED.DECISION": DECISIONS,
               "IARED.INTERPRETER_OPTIMIZER": ("",) + OPTIMIZERS}

    def build_policy(self, cfg: CfgNode, dim: int) -> InterpreterPolicy:
        p = cfg.IARED
        return InterpreterPolicy(dim, p.NUM_GROUPS, p.THRESHOLD, p.INTERPRETER_HEADS, p.INTERPRETER_DIM,
                                 p.FIRST_DROP_GROUP - 1, p.INTERPRETER_INIT_SCORE, last_group=last_drop_index(cfg),
                                 hidden=p.INTERPRETER_HIDDEN, input_kind=p.INTERPRETER_INPUT,
                                 decision=p.DECISION)

    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        return PolicyModel(backbone, self.build_policy(cfg, backbone.embed_dim), cfg.IARED.NUM_GROUPS)

    def drawn_threshold(self, cfg: CfgNode) -> float | None:
        """``IARED.THRESHOLD`` where it decides (under ``DECISION expected_count`` each sample keeps its best)."""
        return float(cfg.IARED.THRESHOLD) if cfg.IARED.DECISION == "threshold" else None

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        """The IARED section (checked here once for IA-RED^2 and its Gumbel variant)."""
        p, errors = cfg.IARED, []
        if not 0.0 < p.THRESHOLD < 1.0:
            errors.append(f"IARED.THRESHOLD must lie in (0, 1), got {p.THRESHOLD}")
        if p.REINFORCE_SAMPLES < 1:
            errors.append(f"IARED.REINFORCE_SAMPLES must be >= 1, got {p.REINFORCE_SAMPLES}")
        elif p.REINFORCE_BASELINE == "leave_one_out" and p.REINFORCE_SAMPLES < 2:
            errors.append(f"IARED.REINFORCE_BASELINE leave_one_out needs IARED.REINFORCE_SAMPLES >= 2, got "
                          f"{p.REINFORCE_SAMPLES}")
        if p.INTERPRETER_HIDDEN < 0:
            errors.append(f"IARED.INTERPRETER_HIDDEN must be 0 (linear F_q) or a width > 0, got {p.INTERPRETER_HIDDEN}")
        errors += _group_errors(p, depth)
        interpreters = isinstance(method_for_cfg(cfg), IARED2)  # IA-RED^2 or a variant runs them
        if interpreters and p.INTERPRETER_INPUT != "tokens" and p.FIRST_DROP_GROUP != 1:
            errors.append(f"IARED.INTERPRETER_INPUT {p.INTERPRETER_INPUT} changes the first group's interpreter "
                          f"only, which IARED.FIRST_DROP_GROUP={p.FIRST_DROP_GROUP} skips; use tokens or "
                          "FIRST_DROP_GROUP 1")
        if interpreters and p.INTERPRETER_INPUT == "difference" and not is_video(cfg):
            errors.append("IARED.INTERPRETER_INPUT difference compares frames and needs a video model "
                          "(MODEL.MODEL_NAME timesformer); use tokens or content")
        return errors

    def stages(self, plan: StagePlan) -> list[Stage]:
        stages = []
        for group in plan.dropping_groups:
            stages += [Stage("interpreter", group, plan.interpreter_epochs),
                       Stage("backbone", group, plan.backbone_epochs)]
        return [s for s in stages if s.epochs > 0]

    def step(self, run, x: Tensor, y: Tensor, ctx) -> tuple[Tensor, dict]:
        if run.stage.kind == "interpreter":
            return reinforce_step(run.net, run.model, x, y, run.modes, run.stage.group, ctx.args.options,
                                  ctx.args.amp_dtype)
        return ce_step(run.net, x, y, run.modes, ctx.args)

    def step_options(self, cfg: CfgNode) -> RewardOptions:
        i = cfg.IARED
        return RewardOptions(i.TAU, i.REWARD, i.REWARD_NORMALIZER, i.REWARD_OUTCOME, i.REINFORCE_SAMPLES,
                             i.REINFORCE_BASELINE)

    def prepare_stage(self, cfg: CfgNode, model: nn.Module, stage: Stage) -> None:
        """An interpreter stage trains interpreter i alone (Alg. 1 step a); other stages as ``set_trainable``."""
        if stage.kind != "interpreter":
            return super().prepare_stage(cfg, model, stage)
        model.requires_grad_(False)
        cast(InterpreterPolicy, model.policy).interpreters[stage.group].requires_grad_(True)

    def model_in_train_mode(self, stage: Stage) -> bool:
        """Interpreter stages keep the frozen backbone in eval (deterministic rewards)."""
        return stage.kind != "interpreter"

    def optimizer(self, cfg: CfgNode, model: nn.Module, stage: Stage, steps_per_epoch: int) -> torch.optim.Optimizer:
        """Interpreter stages: IARED.INTERPRETER_* settings; backbone stages: SOLVER.*."""
        if stage.kind != "interpreter":
            return super().optimizer(cfg, model, stage, steps_per_epoch)
        s, i = cfg.SOLVER, cfg.IARED
        return build_optimizer(model.named_parameters(), i.INTERPRETER_OPTIMIZER or s.OPTIMIZING_METHOD,
                               i.INTERPRETER_LR, i.INTERPRETER_WEIGHT_DECAY, s.MOMENTUM, s.NESTEROV)

    def base_lr(self, cfg: CfgNode, stage: Stage) -> float:
        return cfg.IARED.INTERPRETER_LR if stage.kind == "interpreter" else cfg.SOLVER.BASE_LR

    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        interpreters = cast(InterpreterPolicy, model.policy).interpreters
        return interpreter_macs(cast(MultiHeadInterpreter, interpreters[group]), num_scored)

    def shared_interpreters(self, bench: BenchContext) -> InterpreterPolicy:
        """The benchmark's interpreters (built once; ``bench.weights`` loaded over backbone and them)."""
        if "interpreter" not in bench.shared:
            policy = self.build_policy(bench.cfg, bench.backbone.embed_dim)
            for path in bench.weights:
                load_pretrained(PolicyModel(bench.backbone, policy, bench.num_groups), path)
            bench.shared["interpreter"] = policy
        return cast(InterpreterPolicy, bench.shared["interpreter"])

    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        """As configured: one variant per ``settings.thresholds``; at a keep target: controlled keep."""
        interp, groups = self.shared_interpreters(bench), bench.num_groups
        if keep_ratio is None:
            return [Variant(f"iared@t={t:g}", PolicyModel(bench.backbone, threshold_policy(interp, float(t)), groups),
                            self.name, threshold=float(t)) for t in bench.settings.thresholds]
        s = bench.settings
        policy = ControlledKeepPolicy(interp, s.keep_schedule)
        lo, hi = max(keep_ratio - s.keep_spread, 0.01), min(keep_ratio + s.keep_spread, 1.0)

        def setup(batch: int, gen: torch.Generator) -> None:  # evenly spread over [lo, hi], shuffled: mean (lo+hi)/2
            policy.set_ratios(lo + (hi - lo) * (torch.randperm(batch, generator=gen).double() + 0.5) / batch)

        return [Variant(f"iared@keep={keep_ratio:g}±{s.keep_spread:g}", PolicyModel(bench.backbone, policy, groups),
                        self.name, keep_target=keep_ratio, setup=setup)]


register(IARED2())
