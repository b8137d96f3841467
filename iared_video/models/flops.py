"""FLOPs of dense and token-dropping models, in fvcore's convention (1 multiply-add = 1 "flop").

Everything here counts multiply-accumulates (MACs); "GFLOPs" as papers and
fvcore report them are these GMACs. The analytic counts follow fvcore's
per-operator rules so that they agree with ``FlopCountAnalysis`` on the same
model:

* linear / conv / matmul / einsum: in x out per token (bias free);
* attention (``scaled_dot_product_attention``): ``Lq * Lk * (d_qk + d_v)`` per head, i.e. ``2 n^2 C`` per block;
  a divided space-time block sums this over its temporal and spatial sequences (``divided_block_macs``);
* LayerNorm: 5 per element (fvcore's rough estimate for affine norms);
* element-wise ops (GELU, softmax, sigmoid, residual adds, bias) are free.

Each method supplies its policy's cost (``Method.policy_macs``, handed to ``group_gmacs_per_sample``);
``iared_video.methods.model_gmacs_per_sample`` asks the method of the model. Token reducers (ToMe, EViT) count
each block's attention half on the tokens entering it and its MLP half on the tokens left
(``models/reduction.py``), plus their own matmuls.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from math import prod
from typing import Any, cast

import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.models.backbones import Backbone, ConvStemEmbed, TimeSformer
from iared_video.models.divided import DividedBlock
from iared_video.models.policies import MODES
from iared_video.models.policy_model import PolicyModel, PolicyOutput
from iared_video.models.token_ops import block_attention

__all__ = ["layer_norm_macs", "block_macs", "divided_block_macs", "patch_embed_macs", "head_macs",
           "linear_macs", "norm_macs", "timm_block_macs", "token_counts",
           "group_gmacs_per_sample", "attention_part_macs", "mlp_part_macs", "dense_gmacs", "sdpa_flop_jit",
           "fvcore_gflops", "PolicyMacs"]

logger = logging.getLogger(__name__)

Count = int | float | Tensor
LAYER_NORM_MACS_PER_ELEMENT = 5  # fvcore's norm_flop_counter for affine norms
# Ops fvcore does not count that are element-wise, indexing or bookkeeping: free under its convention.
TRIVIAL_OPS = frozenset({
    "aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::mul_", "aten::div", "aten::sum", "aten::mean",
    "aten::gelu", "aten::sigmoid", "aten::softmax", "aten::unflatten", "aten::bincount", "aten::repeat_interleave",
    "aten::cumsum", "aten::view_as", "aten::rsub", "aten::log", "aten::bernoulli", "aten::scatter_",
    "aten::topk", "aten::upsample_bicubic2d", "aten::upsample_linear1d", "aten::linalg_vector_norm",
    "aten::amax", "aten::clamp_min", "aten::index_add", "aten::index_put", "aten::zeros_like", "aten::ones_like",
    "aten::rand", "aten::neg", "aten::pow", "aten::expand_as", "aten::type_as",
    "aten::log_softmax", "aten::exp", "aten::chunk", "aten::scatter", "aten::numel", "aten::argsort",
    "aten::resolve_conj", "aten::resolve_neg", "aten::reciprocal",  # divST layout
    "aten::new_ones", "aten::scatter_add", "aten::clone", "aten::sort", "aten::gather", "aten::max",  # token reducers
    "aten::masked_fill", "aten::clamp",
    "aten::pad",  # a conv stem's replicated clip ends
})


# ---------------------------------------------------------------------------
# Analytic counts (per sample).
# ---------------------------------------------------------------------------
def layer_norm_macs(num_tokens: Count, dim: int) -> Count:
    """LayerNorm over ``num_tokens`` tokens of width ``dim``, 5 per element as fvcore counts it."""
    return LAYER_NORM_MACS_PER_ELEMENT * num_tokens * dim


def block_macs(num_tokens: Count, dim: int, mlp_ratio: float = 4.0, mlp_hidden: int | None = None,
               count_norms: bool = True) -> Count:
    """MACs of one pre-norm ViT block on ``n`` tokens of width ``C``.

    ``qkv 3nC^2 + attention 2n^2C (QK^T and AV) + proj nC^2 + MLP 2nCr`` (``r = mlp_hidden``, default
    ``int(C * mlp_ratio)``), plus two LayerNorms (``10nC``) when ``count_norms``.
    """
    hidden = mlp_hidden if mlp_hidden is not None else int(dim * mlp_ratio)
    n = num_tokens
    macs = 3 * n * dim * dim + 2 * n * n * dim + n * dim * dim + 2 * n * dim * hidden
    return macs + (2 * layer_norm_macs(n, dim) if count_norms else 0)


def linear_macs(module: nn.Module | None) -> int:
    """A linear layer on one token (``in x out``, bias free); 0 for anything else."""
    return module.in_features * module.out_features if isinstance(module, nn.Linear) else 0


def norm_macs(module: nn.Module | None, num_tokens: Count) -> Count:
    """A LayerNorm on ``num_tokens`` tokens; 0 for anything else."""
    return layer_norm_macs(num_tokens, module.normalized_shape[-1]) if isinstance(module, nn.LayerNorm) else 0


def attention_part_macs(block: Block, num_tokens: Count) -> Count:
    """The attention half of a timm ``Block`` on ``n`` tokens: ``norm1``, qkv, ``2 n^2 C``, proj."""
    attn, n = block_attention(block), num_tokens
    dim = attn.qkv.in_features
    return norm_macs(block.norm1, n) + n * linear_macs(attn.qkv) + 2 * n * n * dim + n * linear_macs(attn.proj)


def mlp_part_macs(block: Block, num_tokens: Count) -> Count:
    """The MLP half of a timm ``Block`` on ``n`` tokens: ``norm2``, fc1, fc2."""
    mlp = cast(Mlp, block.mlp)  # timm types Block.mlp as nn.Module
    return norm_macs(block.norm2, num_tokens) + num_tokens * (linear_macs(mlp.fc1) + linear_macs(mlp.fc2))


def timm_block_macs(block: Block, num_tokens: Count) -> Count:
    """``block_macs`` with the dimensions read from a timm ``Block``."""
    return attention_part_macs(block, num_tokens) + mlp_part_macs(block, num_tokens)


def divided_block_macs(block: DividedBlock, keep: Tensor, frames: int) -> Tensor:
    """MACs per sample of a divided space-time block on the kept patch tokens plus the class token.

    With ``K`` kept patches, ``k_s`` kept at spatial position s and ``m_t`` in frame t:
    temporal (patches only) ``temporal_norm1 + K (qkv + proj + temporal_fc) + 2 C sum_s k_s^2``; spatial
    (each frame's patches and its class-token copy, ``K + T`` tokens) ``norm1 + (K + T)(qkv + proj)
    + 2 C sum_t (1 + m_t)^2``; ``norm2`` and the MLP on ``K + 1`` tokens.

    Args:
        block: the block (dimensions are read from its modules).
        keep: ``(B, N)`` keep mask (or 0/1 values) of the patch tokens entering the block, frame-major.
        frames: T.
    """
    per_frame = keep.double().view(keep.shape[0], frames, -1)  # (B, T, h*w)
    kept = per_frame.sum((1, 2))
    dim = block.attn.qkv.in_features
    t_attn, s_attn = block.temporal_attn, block.attn
    temporal = (norm_macs(block.temporal_norm1, kept) + 2 * dim * (per_frame.sum(1) ** 2).sum(1)
                + kept * (linear_macs(t_attn.qkv) + linear_macs(t_attn.proj) + linear_macs(block.temporal_fc)))
    spatial_tokens = kept + frames
    spatial = (norm_macs(block.norm1, spatial_tokens) + 2 * dim * ((per_frame.sum(2) + 1) ** 2).sum(1)
               + spatial_tokens * (linear_macs(s_attn.qkv) + linear_macs(s_attn.proj)))
    mlp = norm_macs(block.norm2, kept + 1) + (kept + 1) * (linear_macs(block.mlp.fc1) + linear_macs(block.mlp.fc2))
    return temporal + spatial + mlp


def patch_embed_macs(backbone: Backbone, num_patches: Count) -> Count:
    """Patch-embedding convolution (``N * C * C_in * p^2``) plus its norm, if any; a conv stem's own count."""
    embed = backbone.patch_embed
    if isinstance(embed, ConvStemEmbed):
        return num_patches * embed.macs_per_token()
    return num_patches * embed.proj.weight.numel() + norm_macs(getattr(embed, "norm", None), num_patches)


def head_macs(backbone: Backbone) -> Count:
    """Final LayerNorm on the prefix token(s) the head reads, plus the head(s)."""
    if isinstance(backbone, TimeSformer):  # norm on the class token only
        return norm_macs(backbone.norm, 1) + linear_macs(backbone.head)
    net = backbone  # TimmViT: norm over all prefix tokens, timm's forward_head
    macs = norm_macs(net.norm, net.num_prefix_tokens) + norm_macs(getattr(net, "fc_norm", None), 1)
    return macs + linear_macs(net.head) + linear_macs(getattr(net, "head_dist", None))


# ---------------------------------------------------------------------------
# Per-sample totals.
# ---------------------------------------------------------------------------
def token_counts(tokens: PolicyOutput | Tensor | Sequence, num_patches: int | None = None) -> tuple[Tensor, int]:
    """Patch tokens entering each group's blocks, ``(B, D)`` float64, and N.

    Args:
        tokens: a ``PolicyOutput`` (counts from its keep masks), a ``(B, D)`` tensor, or D per-group
            counts (ints or ``(B,)`` tensors).
        num_patches: N (patch tokens before any drop); required unless ``tokens`` is a ``PolicyOutput``.
    """
    if isinstance(tokens, PolicyOutput):
        counts = torch.stack([k.sum(dim=1) for k in tokens.keep], dim=1)
        return counts.double().cpu(), tokens.keep[0].shape[1]
    if num_patches is None:
        raise ValueError("num_patches (N before any drop) is required with raw token counts")
    if not isinstance(tokens, Tensor):
        tokens = torch.stack([torch.as_tensor(c).reshape(-1) for c in tokens], dim=1)
    if tokens.ndim != 2:
        raise ValueError(f"token counts must be (B, D), got shape {tuple(tokens.shape)}")
    return tokens.double().cpu(), num_patches


#: ``policy_macs(model, group, num_scored, num_prefix)``: what a method's policy costs at a group's entry.
PolicyMacs = Callable[[nn.Module, int, Tensor, int], Count]


def group_gmacs_per_sample(model: PolicyModel, tokens: PolicyOutput | Tensor | Sequence, num_patches: int | None,
                           modes: Sequence[str] | None, policy_macs: PolicyMacs) -> Tensor:
    """GMACs per sample of a ``PolicyModel``-style forward (drop policies at group entries).

    Patch embedding on all N patches; group j's policy on the tokens present at its entry (``policy_macs``, if
    it acts there and its mode is not ``keep_all``); group j's blocks on ``prefix + kept`` tokens; final norm
    and head. Arguments as ``iared_video.methods.model_gmacs_per_sample``.
    """
    model = getattr(model, "module", model)
    counts, num = token_counts(tokens, num_patches)
    modes = list(modes) if modes is not None else ["greedy"] * model.num_groups
    if counts.shape[1] != model.num_groups or len(modes) != model.num_groups or any(m not in MODES for m in modes):
        raise ValueError(f"need {model.num_groups} groups of counts and modes, got {counts.shape[1]} and {modes}")
    backbone, num_prefix = model.backbone, model.backbone.num_prefix_tokens
    macs = torch.full_like(counts[:, 0], float(patch_embed_macs(backbone, num) + head_macs(backbone)))
    scored = torch.full_like(counts[:, 0], float(num))
    divided = _divided_masks(model, tokens, counts, num)
    for group in range(model.num_groups):
        if model.policy.acts_on(group) and modes[group] != "keep_all":
            macs = macs + policy_macs(model, group, scored, num_prefix)
        for block in model.group_blocks(group):
            if isinstance(block, DividedBlock):
                assert divided is not None  # set whenever the backbone has divided blocks
                macs = macs + divided_block_macs(block, divided[0][group], divided[1])
            else:
                macs = macs + timm_block_macs(block, counts[:, group] + num_prefix)
        scored = counts[:, group]
    return macs / 1e9


def _divided_masks(model: PolicyModel, tokens: PolicyOutput | Tensor | Sequence, counts: Tensor,
                   num: int) -> tuple[list[Tensor], int] | None:
    """Per-group keep masks and frame count for divided space-time blocks (None for other backbones).

    Their cost depends on where the kept tokens lie, so drops need the keep masks of a ``PolicyOutput``;
    raw counts are accepted when every token is kept (grid from the backbone's frame count).
    """
    if not any(isinstance(b, DividedBlock) for b in model.backbone.blocks):
        return None
    if isinstance(tokens, PolicyOutput):
        return [k.cpu() for k in tokens.keep], tokens.grid[0]
    frames = cast(TimeSformer, model.backbone).num_frames  # only the TimeSformer builds divided blocks
    if not bool((counts == num).all()) or num % frames:
        raise ValueError("divided space-time FLOPs depend on where the kept tokens lie: pass the PolicyOutput "
                         "(keep masks), not token counts")
    return [torch.ones(counts.shape[0], num)] * model.num_groups, frames


def dense_gmacs(model: PolicyModel, num_patches: int) -> float:
    """GMACs of one sample through the backbone alone, every token kept and no policy cost."""
    counts = torch.full((1, model.num_groups), float(num_patches))
    modes = ["keep_all"] * model.num_groups  # no policy acts: its cost is never asked
    return float(group_gmacs_per_sample(model, counts, num_patches, modes, lambda *args: 0)[0])


# ---------------------------------------------------------------------------
# fvcore.
# ---------------------------------------------------------------------------
def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: ``batch * Lq * Lk * (d_qk + d_v)``.

    For ``d_qk = d_v = d`` that is ``2 * B * H * Lq * Lk * d`` (``QK^T`` and ``AV``).
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    return prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def fvcore_gflops(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> float:
    """fvcore ``FlopCountAnalysis`` total for ``model(inputs)`` in G (fvcore "flops" = MACs), whole batch.

    Adds a handle for fused attention (fvcore counts it as 0 otherwise), silences fvcore's noise about
    element-wise/bookkeeping ops, and warns about any other op it could not count.
    """
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings and fvcore's import-time jit.script deprecation
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, inputs)
            analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = analysis.total()
        uncounted = {op: n for op, n in analysis.unsupported_ops().items() if op not in TRIVIAL_OPS}
    finally:
        model.train(was_training)
    if uncounted:
        logger.warning("fvcore could not count these ops (counted as 0): %s", dict(uncounted))
    return total / 1e9
