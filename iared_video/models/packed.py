"""Transformer blocks on packed variable-length token sets.

A batch whose samples keep different numbers of tokens is stored as one
``(T_total, C)`` tensor plus sequence offsets (``cu_seqlens``), as in varlen
flash attention. LayerNorm, QKV, projection and MLP act per token and run once
on the packed tensor; only attention needs the sequence boundaries and runs
block-diagonally (on CPU, samples of similar length are padded together for it). The blocks themselves run through the
token-ops layer (``token_ops.py``); this module holds the sequence bookkeeping and the attention kernels.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

try:  # CUDA flash varlen kernel (torch >= 2.10)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch
    varlen_attn = None  # type: ignore[assignment]  # None marks the kernel missing (see _use_varlen)

__all__ = ["PackedSeqs", "Bucket", "BucketLayout", "block_diagonal_sdpa", "packed_qkv_sdpa"]


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

    def buckets(self, pair_macs: int) -> list[list[int]]:
        """Samples grouped for attention: one SDPA call per group over its members padded to the longest.

        Cost model (CPU, ``bucket_cost``): a call costs a fixed overhead, ``pair_macs`` per query-key pair
        of the padded group and, for a group of several samples, the gather of its tokens. Groups are runs
        of the samples sorted by length, and the partition minimising the total is found exactly by
        dynamic programming. Short sequences (images, a few dozen tokens) end up in a few groups of
        similar length, long ones (video clips) mostly one sample per call.
        """
        return _partition_by_length(self.seqlens, pair_macs)

    def bucket_layout(self, pair_macs: int) -> BucketLayout:
        """``buckets(pair_macs)`` as index tensors (computed once per ``pair_macs``: the blocks of a group share it)."""
        if pair_macs not in self._layout_cache:
            self._layout_cache[pair_macs] = BucketLayout.build(self, self.buckets(pair_macs))
        return self._layout_cache[pair_macs]

    @cached_property
    def _layout_cache(self) -> dict[int, BucketLayout]:
        return {}


@dataclass(frozen=True)
class Bucket:
    """One attention call: ``size`` samples padded to ``width`` tokens, sample-major.

    Attributes:
        gather: ``(size * width,)`` packed row feeding each padded slot; a padding slot repeats its
            sample's first row (its key is masked out and its query's output is discarded). None (as
            ``dest`` and ``src``) for a one-sample bucket.
        dest: padded slot of each of the bucket's tokens, in packed order.
        src: packed row of each of the bucket's tokens (``gather[dest]``).
        pad_bias: ``(size * width,)`` additive key bias, 0 on real tokens and -inf on padding (SDPA takes
            a float mask as it is; a bool one it converts first); None when no slot is padding.
        rows: ``(start, stop)`` packed rows of a one-sample bucket, which runs on a view (nothing gathered).
    """

    gather: Tensor | None
    dest: Tensor | None
    src: Tensor | None
    size: int
    width: int
    pad_bias: Tensor | None
    rows: tuple[int, int] | None

    @classmethod
    def build(cls, members: list[int], rows: list[int], device: torch.device) -> Bucket:
        """The bucket of samples ``members``; ``rows`` is the host copy of ``cu_seqlens``."""
        if len(members) == 1:  # a view of the packed rows: no index tensors at all
            start, stop = rows[members[0]], rows[members[0] + 1]
            return cls(None, None, None, 1, stop - start, None, (start, stop))
        members = sorted(members)
        lengths = [rows[i + 1] - rows[i] for i in members]
        first, n = (torch.tensor(v, device=device) for v in ([rows[i] for i in members], lengths))
        width = max(lengths)
        position = torch.arange(width, device=device)
        valid = position < n[:, None]
        gather = (first[:, None] + position * valid).flatten()
        flat = valid.flatten()
        dest = flat.nonzero().squeeze(1)
        pad_bias = None if min(lengths) == width else torch.zeros(flat.shape, device=device).masked_fill(
            ~flat, float("-inf"))
        return cls(gather, dest, gather[dest], len(members), width, pad_bias, None)


@dataclass(frozen=True)
class BucketLayout:
    """The buckets of a packed batch (``whole``: one bucket of every sample, whose output is already in
    packed order)."""

    buckets: list[Bucket]

    @property
    def whole(self) -> bool:
        return len(self.buckets) == 1

    @cached_property
    def per_sample(self) -> list[Bucket] | None:
        """The buckets in packed order if every one holds a single sample (their outputs then concatenate
        into the packed output: one copy instead of one indexed write per sample), else None."""
        if any(b.rows is None for b in self.buckets):
            return None
        return sorted(self.buckets, key=lambda b: cast(tuple[int, int], b.rows)[0])

    @classmethod
    def build(cls, seqs: PackedSeqs, groups: list[list[int]]) -> BucketLayout:
        rows = [0, *itertools.accumulate(seqs.seqlens)]
        return cls([Bucket.build(members, rows, seqs.cu_seqlens.device) for members in groups])


def _partition_by_length(seqlens: list[int], pair_macs: int) -> list[list[int]]:
    """Cheapest grouping of samples into runs of the length-sorted order (see ``PackedSeqs.buckets``):
    exact dynamic programme, ``best[j]`` the cost of the j shortest samples, O(B) integer host arithmetic.

    The last group of the j shortest is ``order[i:j]``: alone (``i = j - 1``, no gather) or padded to
    ``width = lengths[j - 1]`` at ``grouped`` per sample, costing ``best[i] + call + (j - i) * grouped``.
    Minimising ``best[i] - i * grouped`` over i is the lower envelope of lines of slope ``-i`` at
    ``x = grouped``; slopes fall as i grows and x never falls (lengths are sorted), so a deque whose
    front is the best line for the current x answers each j in amortised O(1) (the convex hull trick).
    """
    order = sorted(range(len(seqlens)), key=seqlens.__getitem__)
    lengths = [seqlens[i] for i in order]
    best, cut = [0] * (len(order) + 1), [0] * (len(order) + 1)
    hull: collections.deque[int] = collections.deque()  # candidate i, slopes -i decreasing

    def line(i: int, x: int) -> int:
        return best[i] - i * x

    for j in range(1, len(order) + 1):
        width = lengths[j - 1]
        best[j], cut[j] = best[j - 1] + bucket_cost(1, width, pair_macs), j - 1
        if j >= 2:
            _hull_push(hull, j - 2, best)
            grouped = pair_macs * width * (width + _GATHER_PAIRS)  # bucket_cost(n, width) = call + n * grouped
            while len(hull) > 1 and line(hull[1], grouped) <= line(hull[0], grouped):
                hull.popleft()
            cost = line(hull[0], grouped) + _SDPA_CALL_MACS + j * grouped
            if cost < best[j]:
                best[j], cut[j] = cost, hull[0]
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _hull_push(hull: collections.deque[int], i: int, best: list[int]) -> None:
    """Adds line ``y = best[i] - i x`` to the lower envelope, dropping the lines it makes useless: the back
    line b (between a and i) is useless when a and i cross at or left of where a and b cross."""
    while len(hull) > 1:
        a, b = hull[-2], hull[-1]
        if (best[i] - best[a]) * (b - a) <= (best[b] - best[a]) * (i - a):
            hull.pop()
        else:
            break
    hull.append(i)


def bucket_cost(size: int, width: int, pair_macs: int) -> int:
    """Modelled CPU cost, in MACs, of one attention call over ``size`` samples padded to ``width`` tokens:
    the call's fixed overhead, the padded query-key pairs and, for several samples, gathering their
    tokens (``_GATHER_PAIRS`` pairs' worth per token; one sample runs on a view of its rows)."""
    gather = _GATHER_PAIRS * size * width if size > 1 else 0
    return _SDPA_CALL_MACS + pair_macs * (size * width * width + gather)


#: Fixed cost of one CPU attention call (dispatch and the group's index tensors, about 200 us against
#: about 20 GMAC/s of attention on two cores) in multiply-accumulates, and the cost of gathering one token
#: into a padded group in query-key pairs. Fitted to interleaved timings of the synthetic models' token-dropping
#: forwards (2 cores): images (at most 37 tokens) run fastest in one or a few large groups, video clips
#: (150-290 tokens) one per call, their short outliers grouped.
_SDPA_CALL_MACS = 4_000_000
_GATHER_PAIRS = 200


def _use_varlen(x: Tensor) -> bool:
    return varlen_attn is not None and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)


def block_diagonal_sdpa(q: Tensor, k: Tensor, v: Tensor, seqs: PackedSeqs, dropout_p: float = 0.0,
                        scale: float | None = None, key_bias: Tensor | None = None) -> Tensor:
    """Attention within each sample of packed ``(T, H, d)`` q/k/v; returns ``(T, H, d)``.

    ``packed_qkv_sdpa`` on the three stacked (one copy); the blocks hand it their fused q/k/v directly.
    """
    return packed_qkv_sdpa(torch.stack((q, k, v), dim=1), seqs, dropout_p, scale, key_bias)


def packed_qkv_sdpa(qkv: Tensor, seqs: PackedSeqs, dropout_p: float = 0.0, scale: float | None = None,
                    key_bias: Tensor | None = None) -> Tensor:
    """Attention within each sample of packed ``(T, 3, H, d)`` queries, keys and values; returns ``(T, H, d)``.

    CUDA half precision uses the varlen flash kernel (without ``key_bias``). Equal lengths use one
    batched SDPA call. Otherwise the samples go in length buckets (``PackedSeqs.buckets``: from one call
    over the whole padded batch to one call per sample, whichever the cost model finds cheapest), each
    one SDPA call with its padded keys masked out; a bucket gathers its rows of the fused q/k/v at once.
    The linear layers, where most FLOPs are, stay packed in every case.

    Args:
        qkv: packed queries, keys and values, stacked on dim 1 (the layout of a fused qkv projection).
        seqs: the sequences.
        dropout_p: attention dropout.
        scale: logit scale (default ``d ** -0.5``).
        key_bias: optional ``(T,)`` additive logit bias per key (ToMe's proportional attention ``log s``).
    """
    if _use_varlen(qkv) and dropout_p == 0.0 and key_bias is None:
        cu = seqs.cu_seqlens
        q, k, v = qkv.unbind(1)
        # torch's hint covers return_aux (an (out, aux) pair); without it the output alone comes back
        return cast(Tensor, varlen_attn(q, k, v, cu, cu, seqs.max_seqlen, seqs.max_seqlen, scale=scale))
    bias = None if key_bias is None else key_bias.to(qkv.dtype)
    length = seqs.uniform_length
    if length is not None:
        q4, k4, v4 = rearrange(qkv, "(b l) three h d -> three b h l d", l=length).unbind(0)
        mask = None if bias is None else bias.view(seqs.batch_size, 1, 1, length)
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return rearrange(out, "b h l d -> (b l) h d")
    layout = seqs.bucket_layout(pair_macs=2 * qkv.shape[2] * qkv.shape[3])
    if layout.whole:
        return _bucket_sdpa(qkv, layout.buckets[0], bias, dropout_p, scale)
    if layout.per_sample is not None:
        return torch.cat([_bucket_sdpa(qkv, bucket, bias, dropout_p, scale) for bucket in layout.per_sample])
    out = qkv.new_empty((qkv.shape[0],) + qkv.shape[2:])
    for bucket in layout.buckets:
        where = slice(*bucket.rows) if bucket.rows is not None else bucket.src
        out[where] = _bucket_sdpa(qkv, bucket, bias, dropout_p, scale)
    return out


def _bucket_sdpa(qkv: Tensor, bucket: Bucket, bias: Tensor | None, dropout_p: float,
                 scale: float | None) -> Tensor:
    """SDPA over one bucket's samples padded to its width; returns its tokens' outputs in packed order."""
    if bucket.rows is not None:  # one sample: its own rows, no padding
        rows = slice(*bucket.rows)
        mask = None if bias is None else bias[rows].view(1, 1, -1)
        # plain permutes: this runs per sample and block, where einops' parsing would add ~3 us a call
        q3, k3, v3 = qkv[rows].permute(1, 2, 0, 3).unbind(0)  # (H, L, d) each
        out = F.scaled_dot_product_attention(q3, k3, v3, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return out.transpose(0, 1)
    assert bucket.gather is not None and bucket.dest is not None  # set for every bucket of several samples
    shape = (bucket.size, bucket.width) + qkv.shape[1:]
    q4, k4, v4 = qkv[bucket.gather].view(shape).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, d) each
    keys = bucket.pad_bias if bias is None else (
        bias[bucket.gather] if bucket.pad_bias is None else bias[bucket.gather] + bucket.pad_bias)
    mask = None if keys is None else keys.to(qkv.dtype).view(bucket.size, 1, 1, bucket.width)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2).reshape(-1, *qkv.shape[2:])[bucket.dest]
