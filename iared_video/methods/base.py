"""The ``Method`` interface: everything the engine, FLOP counter, benchmark and tools need from a method.

A method module subclasses ``Method``, overrides what differs from the defaults (cross-entropy training in
one ``"train"`` stage, SOLVER.* optimiser, no policy cost, no benchmark variant) and registers an instance:

    class ToMe(Method):
        name, policy_type = "tome", ToMeReducer
        def build(self, cfg, backbone): ...

    register(ToMe())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.config.runtime import is_video
from iared_video.methods.stages import Stage, StagePlan, set_trainable
from iared_video.methods.steps import ce_step
from iared_video.models.backbones import Backbone
from iared_video.models.flops import Count, group_gmacs_per_sample
from iared_video.models.optim import build_optimizer
from iared_video.models.policy_model import PolicyModel

__all__ = ["Method", "Knob", "Variant", "BenchContext", "ORDER", "Count", "depth_quarters",
           "resolve_locations"]

#: Table order of the built-in methods (others follow by name).
ORDER = ("dense", "iared", "iared_gumbel", "dynamicvit", "drop_random", "drop_attention", "drop_temporal_diff", "tome",
         "evit")


def depth_quarters(depth: int, first: int = 0) -> list[int]:
    """0-based blocks at a quarter, a half and three quarters of ``depth``: ``floor(k depth / 4)``, k = 1, 2, 3.

    Where EViT and DynamicViT place their three reductions on 12 blocks ([3, 6, 9]); on 6 blocks [1, 3, 4], on
    4 blocks [1, 2, 3]. Blocks below ``first`` (DynamicViT's predictors need a block before them: 1) and repeats
    are left out.
    """
    return sorted({block for block in (k * depth // 4 for k in (1, 2, 3)) if first <= block < depth})


def resolve_locations(locations: Sequence[int], depth: int, first: int = 0) -> list[int]:
    """The configured blocks, or ``depth_quarters(depth, first)`` for ``[]`` (the depth-relative default)."""
    return [int(v) for v in locations] if len(locations) else depth_quarters(depth, first)


@dataclass(frozen=True)
class Knob:
    """The config key that sets a method's cost, for matching methods at equal GMACs.

    Attributes:
        key: the config key (``"TOME.R"``).
        low, high: the range searched.
        integer: whether the value is an integer.
        cost_rises: whether GMACs grow with the value (keep rate) or fall (drop ratio, merged tokens).
        with_opts: ``KEY VALUE`` options set with the knob (e.g. clearing a per-layer override of it).
    """

    key: str
    low: float
    high: float
    integer: bool = False
    cost_rises: bool = False
    with_opts: tuple[str, ...] = ()


@dataclass
class Variant:
    """One model to time in the benchmark: a name, the wrapped model and how to prepare a batch."""

    name: str
    model: nn.Module
    policy: str
    keep_target: float | None = None
    threshold: float | None = None
    setup: Callable[[int, torch.Generator], None] = lambda batch, gen: None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchContext:
    """What benchmark variants are built from: one backbone shared by every variant (same weights).

    Attributes:
        cfg: the model config.
        settings: the ``BenchSettings``.
        backbone: the shared backbone.
        shared: modules a method builds once and reuses across its variants (e.g. trained interpreters).
    """

    cfg: CfgNode
    settings: Any
    backbone: Backbone
    shared: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def num_groups(self) -> int:
        return self.cfg.IARED.NUM_GROUPS

    @property
    def weights(self) -> list[str]:
        """Files to load, in order: ``MODEL.PRETRAINED``, then ``TEST.CHECKPOINT_FILE_PATH`` (the trained
        model, as ``tools/run_net.py`` tests it) over it."""
        return [p for p in (self.cfg.MODEL.PRETRAINED, self.cfg.TEST.CHECKPOINT_FILE_PATH) if p]


class Method:
    """A token-reduction method. Class attributes describe it; methods are the hooks the package calls.

    Attributes:
        name: the registry key, the ``METHOD.NAME`` value that selects it.
        label: its name in tables, benchmark rows and output folders (default ``name``).
        config_nodes: the config sections holding its settings (a checkpoint resumes only under the same values).
        choices: its choice-valued keys and their values (checked with the schema's ``choice_errors``).
        benchmarked: timed by default as configured (``BenchSettings.methods`` empty).
        policy_type: the class of the ``policy`` its models carry (``method_of(model)`` matches on it).
        needs_video: only for video models (it reads frames).
        joint_attention_only: not implemented for divided space-time attention.
        has_scores: its models' ``scores`` are informative (heatmaps are scored).
        training_free: it works on dense weights off the shelf (fine-tuning optional).
        synthetic_config: the ``configs/Synthetic/{tsf,deit}_tiny_<name>.yaml`` it starts from.
        knob: the key that sets its cost (None: as configured).
    """

    name: str = ""
    label: str = ""
    config_nodes: tuple[str, ...] = ()
    choices: ClassVar[dict[str, tuple]] = {}
    benchmarked: bool = False
    policy_type: type = type(None)
    needs_video: bool = False
    joint_attention_only: bool = False
    has_scores: bool = True
    training_free: bool = False
    synthetic_config: str = "dense"
    knob: Knob | None = None

    def __init__(self) -> None:
        self.label = self.label or self.name

    def __repr__(self) -> str:
        return f"<method {self.name}>"

    # ------------------------------------------------------------------ model and config
    def build(self, cfg: CfgNode, backbone: Backbone) -> nn.Module:
        """The wrapped model (``model(x)`` logits, ``model(x, return_policy=True)`` a ``PolicyOutput``).

        The base class stands for policies no method registers (``method_of``): it counts costs but builds nothing.
        """
        raise TypeError(f"{self!r} builds no model: register a Method subclass that defines build()")

    def config_opts(self) -> list[str]:
        """``KEY VALUE`` options that select this method over a config of another method."""
        return ["METHOD.NAME", self.name]

    def config_errors(self, cfg: CfgNode, depth: int, selected: bool) -> list[str]:
        """Problems with this method's config section (``selected``: the config runs this method)."""
        return []

    def requirement_errors(self, cfg: CfgNode) -> list[str]:
        """Why the selected method cannot run on ``cfg``'s model (video only, joint attention only)."""
        errors = []
        if self.needs_video and not is_video(cfg):
            errors.append(f"METHOD.NAME {self.name} needs a video model (MODEL.MODEL_NAME timesformer)")
        if self.joint_attention_only and cfg.MODEL.ATTENTION_TYPE == "divided_space_time":
            errors.append(f"METHOD.NAME {self.name} is implemented for joint space-time attention only; use "
                          "MODEL.ATTENTION_TYPE joint_space_time or another method")
        return errors

    def drawn_threshold(self, cfg: CfgNode) -> float | None:
        """The score threshold that decides a drop, drawn on heatmap colour bars (None: no threshold decides)."""
        return None

    def matched_opts(self, cfg: CfgNode, drop_ratio: float) -> list[str]:
        """Options that make this method remove about ``drop_ratio`` of the patch tokens (``[]``: as configured)."""
        return []

    # ------------------------------------------------------------------ training
    def stages(self, plan: StagePlan) -> list[Stage]:
        """The training schedule: by default one ``"train"`` stage of ``max_epoch`` epochs."""
        return [Stage("train", 0, plan.max_epoch)] if plan.max_epoch > 0 else []

    def step(self, run: Any, x: Tensor, y: Tensor, ctx: Any) -> tuple[Tensor, dict]:
        """Loss and statistics of one batch of ``run`` (a trainer ``StageRun``; ``ctx`` its ``EpochContext``)."""
        return ce_step(run.net, x, y, run.modes, ctx.args)

    def step_options(self, cfg: CfgNode) -> Any:
        """The method's own step settings (``StepArgs.options``), read from its config section."""
        return None

    def prepare_stage(self, cfg: CfgNode, model: nn.Module, stage: Stage) -> None:
        """Set ``requires_grad`` for ``stage`` (``stages.set_trainable``; a method adds e.g. frozen embeddings)."""
        set_trainable(model, stage)

    def model_in_train_mode(self, stage: Stage) -> bool:
        """Whether ``model.train()`` holds during ``stage`` (else eval, e.g. a frozen backbone)."""
        return True

    def optimizer(self, cfg: CfgNode, model: nn.Module, stage: Stage, steps_per_epoch: int) -> torch.optim.Optimizer:
        """The optimiser of ``stage``: SOLVER.* over every parameter."""
        s = cfg.SOLVER
        return build_optimizer(model.named_parameters(), s.OPTIMIZING_METHOD, s.BASE_LR, s.WEIGHT_DECAY, s.MOMENTUM,
                               s.NESTEROV)

    def base_lr(self, cfg: CfgNode, stage: Stage) -> float:
        """The schedule's peak learning rate in ``stage``."""
        return cfg.SOLVER.BASE_LR

    def teacher(self, cfg: CfgNode, model: nn.Module) -> nn.Module | None:
        """A frozen model the loss distils from, made from the initial weights (None: no distillation)."""
        return None

    # ------------------------------------------------------------------ FLOPs
    def policy_macs(self, model: nn.Module, group: int, num_scored: Tensor, num_prefix: int) -> Count:
        """MACs per sample of the policy at ``group``'s entry scoring ``num_scored`` patch tokens."""
        return 0

    def gmacs_per_sample(self, model: nn.Module, tokens: Any, num_patches: int | None,
                         modes: Sequence[str] | None) -> Tensor:
        """``(B,)`` GMACs per sample (``methods.gmacs_per_sample`` documents the arguments)."""
        return group_gmacs_per_sample(cast(PolicyModel, model), tokens, num_patches, modes, self.policy_macs)

    # ------------------------------------------------------------------ benchmark
    def benchmark_variants(self, bench: BenchContext, keep_ratio: float | None) -> list[Variant]:
        """Variants to time on ``bench.backbone``: as configured (``keep_ratio`` None) or at a keep target."""
        return []
