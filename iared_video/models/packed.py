"""Transformer blocks on packed variable-length token sets.

A batch whose samples keep different numbers of tokens is stored as one
``(T_total, C)`` tensor plus sequence offsets (``cu_seqlens``), as in varlen
flash attention. LayerNorm, QKV, projection and MLP act per token and run once
on the packed tensor; only attention needs the sequence boundaries and runs
block-diagonally. Nothing is padded and no sample is processed twice. The blocks themselves run through the
token-ops layer (``token_ops.py``); this module holds the sequence bookkeeping and the attention kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # CUDA flash varlen kernel (torch >= 2.10)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch
    varlen_attn = None  # type: ignore[assignment]  # None marks the kernel missing (see _use_varlen)

__all__ = ["PackedSeqs", "block_diagonal_sdpa"]


@dataclass
class PackedSeqs:
    """Sequence boundaries of a packed token tensor.

    Attributes:
        seqlens: tokens per sample (host list; one device sync builds it).
        cu_seqlens: ``(B + 1,)`` int32 offsets on the tokens' device.
    """

    seqlens: list[int]
    cu_seqlens: Tensor

    @classmethod
    def from_lengths(cls, lengths: list[int], device: torch.device) -> PackedSeqs:
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        return cls(list(lengths), torch.tensor(offsets, dtype=torch.int32, device=device))

    @property
    def batch_size(self) -> int:
        return len(self.seqlens)

    @property
    def max_seqlen(self) -> int:
        return max(self.seqlens)

    @property
    def total(self) -> int:
        return sum(self.seqlens)

    @cached_property
    def uniform_length(self) -> int | None:
        """The common length if every sample has the same number of tokens, else None (computed once)."""
        first = self.seqlens[0]
        return first if all(n == first for n in self.seqlens) else None

    def sample_ids(self) -> Tensor:
        """``(T_total,)`` index of the sample each token belongs to."""
        return self._padded_index[0]

    @cached_property
    def _padded_index(self) -> tuple[Tensor, Tensor]:
        """``(sample, position)`` of every packed token in a ``(B, max_seqlen)`` padded layout (computed once)."""
        device = self.cu_seqlens.device
        counts = torch.tensor(self.seqlens, device=device)
        sample = torch.repeat_interleave(torch.arange(len(self.seqlens), device=device), counts)
        position = torch.arange(self.total, device=device) - self.cu_seqlens[:-1].long()[sample]
        return sample, position

    @cached_property
    def key_mask(self) -> Tensor:
        """``(B, 1, 1, max_seqlen)`` bool: True where a padded position holds a real token."""
        lengths = torch.tensor(self.seqlens, device=self.cu_seqlens.device)
        valid = torch.arange(self.max_seqlen, device=lengths.device) < lengths[:, None]
        return valid[:, None, None, :]

    def pad(self, x: Tensor) -> Tensor:
        """Packed ``(T, ...)`` -> zero-padded ``(B, max_seqlen, ...)``."""
        out = x.new_zeros((self.batch_size, self.max_seqlen) + x.shape[1:])
        out[self._padded_index] = x
        return out

    def unpad(self, x: Tensor) -> Tensor:
        """Padded ``(B, max_seqlen, ...)`` -> packed ``(T, ...)``."""
        return x[self._padded_index]

    def prefers_padding(self, pair_macs: int) -> bool:
        """Whether one masked SDPA call over the padded batch is cheaper than one call per sample.

        Cost model (CPU): each SDPA call costs a fixed ``_SDPA_CALL_MACS`` of dispatch overhead plus
        ``pair_macs`` per query-key pair. Short sequences (images, a few dozen tokens) favour padding;
        long ones with uneven lengths (video clips) favour the per-sample loop.
        """
        loop = self.batch_size * _SDPA_CALL_MACS + pair_macs * sum(n * n for n in self.seqlens)
        padded = _SDPA_CALL_MACS + pair_macs * self.batch_size * self.max_seqlen ** 2
        return padded < loop


#: Dispatch overhead of one CPU SDPA call, in multiply-accumulates of attention work (about 25 us of
#: overhead against about 20 GMAC/s of attention on two cores; measured with tools/benchmark.py).
_SDPA_CALL_MACS = 500_000


def _use_varlen(q: Tensor) -> bool:
    return varlen_attn is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def block_diagonal_sdpa(q: Tensor, k: Tensor, v: Tensor, seqs: PackedSeqs, dropout_p: float = 0.0,
                        scale: float | None = None, key_bias: Tensor | None = None) -> Tensor:
    """Attention within each sample of packed ``(T, H, d)`` q/k/v; returns ``(T, H, d)``.

    CUDA half precision uses the varlen flash kernel (without ``key_bias``). Equal lengths use one
    batched SDPA call. Otherwise, where the cost model says so (short sequences), one SDPA call over the
    zero-padded batch with padded keys masked out; else one SDPA call per sample on its own slice. The
    linear layers, where most FLOPs are, stay packed in every case.

    Args:
        q, k, v: packed queries, keys and values.
        seqs: the sequences.
        dropout_p: attention dropout.
        scale: logit scale (default ``d ** -0.5``).
        key_bias: optional ``(T,)`` additive logit bias per key (ToMe's proportional attention ``log s``).
    """
    if _use_varlen(q) and dropout_p == 0.0 and key_bias is None:
        cu = seqs.cu_seqlens
        # torch's hint covers return_aux (an (out, aux) pair); without it the output alone comes back
        return cast(Tensor, varlen_attn(q, k, v, cu, cu, seqs.max_seqlen, seqs.max_seqlen, scale=scale))
    bias = None if key_bias is None else key_bias.to(q.dtype)
    length = seqs.uniform_length
    if length is not None:
        shape = (seqs.batch_size, length) + q.shape[1:]
        q4, k4, v4 = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        mask = None if bias is None else bias.view(seqs.batch_size, 1, 1, length)
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return out.transpose(1, 2).reshape(q.shape)
    if seqs.prefers_padding(pair_macs=2 * q.shape[1] * q.shape[2]):
        q4, k4, v4 = (seqs.pad(t).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=_padded_mask(seqs, bias), dropout_p=dropout_p,
                                             scale=scale)
        return seqs.unpad(out.transpose(1, 2))
    biases = bias.split(seqs.seqlens) if bias is not None else [None] * seqs.batch_size
    outs = [
        F.scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1),
                                       attn_mask=None if b is None else b.view(1, 1, -1), dropout_p=dropout_p,
                                       scale=scale).transpose(0, 1)
        for qs, ks, vs, b in zip(q.split(seqs.seqlens), k.split(seqs.seqlens), v.split(seqs.seqlens), biases)
    ]
    return torch.cat(outs, dim=0)


def _padded_mask(seqs: PackedSeqs, bias: Tensor | None) -> Tensor:
    """The padded batch's attention mask: bool key mask, or the key bias with ``-inf`` on padded keys."""
    if bias is None:
        return seqs.key_mask
    padded = seqs.pad(bias)[:, None, None, :]
    return padded.masked_fill(~seqs.key_mask, float("-inf"))
