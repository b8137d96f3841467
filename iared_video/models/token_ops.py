"""The token-ops layer: one attention primitive and one block forward over timm ``Attention`` / ``Block``.

Every place that runs a timm attention on its own terms goes through ``attention``: the packed
variable-length blocks of the token-dropping models (and of the token reducers on the same stack), the
divided space-time blocks, the masked-softmax training forward, the interpretability baselines (attention
probabilities), the raw-attention policy (the class-token row only) and the dense teacher.

Token layouts:
    packed: ``(T, C)`` tokens of every sample plus ``PackedSeqs`` (see ``packed.py``);
    batched: ``(B, L, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.models.packed import PackedSeqs, packed_qkv_sdpa

__all__ = ["Attended", "attention", "packed_attention", "masked_softmax", "MASKED_SOFTMAX_EPS", "block_forward",
           "packed_block", "packed_attention_residual", "packed_mlp_residual", "packed_drop_path",
           "class_attention", "block_attention"]

MASKED_SOFTMAX_EPS = 1e-6  # stabilising epsilon of ``masked_softmax`` (the published reference value)


@dataclass
class Attended:
    """What ``attention`` returns.

    Attributes:
        out: the attention branch (after ``norm``, ``proj``, ``proj_drop``) in the input's layout; None when
            ``output=False``.
        probs: ``(B, H, L, L)`` attention probabilities (batched input with ``probs=True``).
        class_attention: ``(B, H, L)`` softmax row of each sample's first (class) token over its keys, 0 on
            padding (``class_row=True``; with ``key_bias`` added to the logits like the output's).
        keys: keys after ``k_norm``, ``(T, H, d)`` packed or ``(B, L, H, d)`` batched (``keys=True``).
    """

    out: Tensor | None = None
    probs: Tensor | None = None
    class_attention: Tensor | None = None
    keys: Tensor | None = None


def _qkv(attn: Attention, x: Tensor) -> Tensor:
    """``(..., L, C)`` -> q, k, v stacked as ``(..., L, 3, H, d)`` (the fused projection's own layout, no
    copy), ``q_norm`` / ``k_norm`` applied (then stacked anew)."""
    qkv = rearrange(attn.qkv(x), "... (qkv h d) -> ... qkv h d", qkv=3, h=attn.num_heads)
    if isinstance(attn.q_norm, nn.Identity) and isinstance(attn.k_norm, nn.Identity):
        return qkv
    q, k, v = qkv.unbind(-3)
    return torch.stack((attn.q_norm(q), attn.k_norm(k), v), dim=-3)


def attention(attn: Attention, x: Tensor, seqs: PackedSeqs | None = None, *, keep: Tensor | None = None,
              key_bias: Tensor | None = None, output: bool = True, probs: bool = False, class_row: bool = False,
              keys: bool = False) -> Attended:
    """A timm ``Attention`` on packed or batched tokens: the one attention primitive of the package.

    Args:
        attn: the timm attention module (its ``qkv``, norms, ``proj`` and dropouts are used).
        x: ``(T, C)`` packed tokens with ``seqs``, or ``(B, L, C)`` batched tokens without.
        seqs: sequence boundaries of packed tokens.
        keep: ``(B, L)`` key keep mask for DynamicViT's masked softmax (batched only).
        key_bias: additive per-key logit bias, ``(T,)`` packed or ``(B, L)`` batched (ToMe's ``log s``).
        output: compute the attention output (False: only what else is asked for, e.g. the class row).
        probs: return the probabilities (explicit softmax instead of the fused kernel; batched only).
        class_row: return each sample's class-token attention row.
        keys: return the keys.
    """
    qkv = _qkv(attn, x)
    q, k, v = qkv.unbind(-3)
    res = Attended(keys=k if keys else None)
    if class_row:
        res.class_attention = _class_row(q, k, attn.scale, seqs, key_bias)
    if not output:
        return res
    if keep is not None or probs:
        if seqs is not None:
            raise ValueError("explicit attention probabilities and key masks need batched (B, L, C) tokens")
        y, res.probs = _explicit(attn, q, k, v, keep, key_bias)
    else:
        y = _fused(attn, qkv, seqs, key_bias)
    res.out = attn.proj_drop(attn.proj(attn.norm(y)))
    if not probs:
        res.probs = None
    return res


def packed_attention(attn: Attention, x: Tensor, seqs: PackedSeqs) -> Tensor:
    """The attention branch of ``attn`` on packed tokens ``(T, C)``."""
    out = attention(attn, x, seqs).out
    assert out is not None  # output=True always fills it
    return out


def _dropout_p(attn: Attention) -> float:
    return attn.attn_drop.p if attn.training else 0.0


def _fused(attn: Attention, qkv: Tensor, seqs: PackedSeqs | None, key_bias: Tensor | None) -> Tensor:
    """Fused SDPA: block-diagonal over packed sequences, or one call on a batch; ``(..., L, H * d)``."""
    if seqs is not None:
        out = packed_qkv_sdpa(qkv, seqs, dropout_p=_dropout_p(attn), scale=attn.scale, key_bias=key_bias)
        return rearrange(out, "n h d -> n (h d)")
    mask = None if key_bias is None else key_bias[:, None, None, :].to(qkv.dtype)
    q, k, v = rearrange(qkv, "b l three h d -> three b h l d").unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=_dropout_p(attn), scale=attn.scale)
    return rearrange(out, "b h l d -> b l (h d)")


def _explicit(attn: Attention, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
              key_bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Softmax written out (probabilities kept, DynamicViT's masked softmax): ``(B, L, H * d)`` and probs."""
    q, k, v = (rearrange(t, "b l h d -> b h l d") for t in (q, k, v))
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if key_bias is not None:
        logits = logits + key_bias[:, None, None, :].to(logits.dtype)
    probs = masked_softmax(logits, keep) if keep is not None else logits.softmax(dim=-1)
    out = attn.attn_drop(probs) @ v
    return rearrange(out, "b h l d -> b l (h d)"), probs


def _class_row(q: Tensor, k: Tensor, scale: float, seqs: PackedSeqs | None, key_bias: Tensor | None) -> Tensor:
    """``(B, H, L)`` softmax of each sample's first query against its keys (padded keys get 0)."""
    valid = None
    if seqs is not None and seqs.uniform_length is not None:
        shape = (seqs.batch_size, seqs.uniform_length)
        q, k = (rearrange(t, "(b l) h d -> b l h d", b=seqs.batch_size) for t in (q, k))
        key_bias = None if key_bias is None else key_bias.view(shape)
    elif seqs is not None:
        q, k, valid = seqs.pad(q), seqs.pad(k), seqs.key_mask[:, 0]  # (B, 1, Lmax)
        key_bias = None if key_bias is None else seqs.pad(key_bias)
    logits = torch.einsum("bqhd,bkhd->bhqk", q[:, :1] * scale, k)[:, :, 0]  # (B, H, L): L * C MACs per sample
    if key_bias is not None:
        logits = logits + key_bias[:, None, :].to(logits.dtype)
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    return logits.softmax(dim=-1)


def masked_softmax(logits: Tensor, keep: Tensor, eps: float = MASKED_SOFTMAX_EPS) -> Tensor:
    """Softmax over the last axis restricted to kept keys plus the diagonal, computed in float32.

    As the official DynamicViT code: ``(w + eps / L) / (sum(w) + eps)`` with ``w = exp(logit - max) * allowed``,
    so a row never divides by zero; the result has the dtype of ``logits``.

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


# ----------------------------------------------------------------------------- blocks


def block_forward(block: Block, x: Tensor, *, keep: Tensor | None = None, probs: bool = False,
                  drop_path: bool = True) -> tuple[Tensor, Tensor | None]:
    """The dense forward of a pre-norm timm ``Block`` on batched ``(B, L, C)`` tokens.

    Args:
        block: the timm block.
        x: tokens.
        keep: ``(B, L)`` key keep mask (DynamicViT training: dropped keys are masked out of attention).
        probs: also return the block's ``(B, H, L, L)`` attention probabilities.
        drop_path: apply the block's stochastic depth in training mode (False: deterministic, for scores).
    """
    att = attention(block_attention(block), block.norm1(x), keep=keep, probs=probs)
    x = x + _maybe(block.drop_path1, drop_path)(block.ls1(att.out))
    x = x + _maybe(block.drop_path2, drop_path)(block.ls2(block.mlp(block.norm2(x))))
    return x, att.probs


def block_attention(block: Block) -> Attention:
    """``block.attn`` as timm's ``Attention`` (timm types it ``nn.Module``; the supported blocks use ``Attention``)."""
    return cast(Attention, block.attn)


def _maybe(module: nn.Module, use: bool) -> nn.Module:
    return module if use else nn.Identity()


def packed_drop_path(x: Tensor, drop_prob: float, training: bool, seqs: PackedSeqs) -> Tensor:
    """Stochastic depth with one keep/drop draw per sample, broadcast to its tokens."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    per_sample = x.new_empty(seqs.batch_size).bernoulli_(keep_prob) / keep_prob
    return x * per_sample[seqs.sample_ids()].unsqueeze(-1)


def _drop_prob(module: nn.Module) -> float:
    return float(getattr(module, "drop_prob", 0.0))


def packed_attention_residual(block: Block, x: Tensor, seqs: PackedSeqs, *, key_bias: Tensor | None = None,
                              keys: bool = False, class_row: bool = False) -> tuple[Tensor, Attended]:
    """``x + ls1(Attn(norm1(x)))`` of a timm ``Block`` on packed tokens, and what the attention returned."""
    att = attention(block_attention(block), block.norm1(x), seqs, key_bias=key_bias, keys=keys, class_row=class_row)
    return x + packed_drop_path(block.ls1(att.out), _drop_prob(block.drop_path1), block.training, seqs), att


def packed_mlp_residual(block: Block, x: Tensor, seqs: PackedSeqs) -> Tensor:
    """``x + ls2(MLP(norm2(x)))`` of a timm ``Block`` on packed tokens."""
    y = block.ls2(block.mlp(block.norm2(x)))
    return x + packed_drop_path(y, _drop_prob(block.drop_path2), block.training, seqs)


def packed_block(block: Block, x: Tensor, seqs: PackedSeqs) -> Tensor:
    """A pre-norm timm ``Block`` (attention + MLP, LayerScale, drop-path) on packed tokens."""
    return packed_mlp_residual(block, packed_attention_residual(block, x, seqs)[0], seqs)


def class_attention(blocks: nn.ModuleList | nn.Sequential, tokens: Tensor, block: int) -> Tensor:
    """``(B, L)`` head-averaged class-token attention of ``blocks[block]`` after the earlier blocks, densely.

    Only ``norm1``, ``qkv`` and the class query's logits of ``blocks[block]`` run (no output branch).
    """
    if not 0 <= block < len(blocks):
        raise ValueError(f"attention block {block} does not exist in a {len(blocks)}-block backbone")
    for earlier in blocks[:block]:
        tokens = block_forward(cast(Block, earlier), tokens, drop_path=False)[0]
    target = cast(Block, blocks[block])
    row = attention(block_attention(target), target.norm1(tokens), output=False, class_row=True).class_attention
    assert row is not None  # class_row=True always fills it
    return row.mean(1)
