"""Token reducers inside the blocks (ToMe, EViT) on the packed block stack.

A ``TokenReducer`` acts between a block's attention and its MLP, as both papers place their reduction:
it reads what the block's attention returned (keys for ToMe's similarity, the class-token attention row
for EViT's attentiveness) and shrinks the token set; the MLP and every later block then run on fewer
tokens. Every sample keeps the same number of tokens (both reduce by fixed counts), so the stack runs on
equal-length packed sequences (batched SDPA, no padding). Prefix (class/distillation) tokens never take
part.

``ReducingViT`` wraps a backbone like ``PolicyModel`` does and returns the same ``PolicyOutput`` with one group
per block: ``keep[l]`` marks the input patches that are still a token of their own after block ``l``
(merged-away and fused patches are not), ``scores[l]`` the reducer's scores where it has them (EViT's
attentiveness), and ``ReducedOutput.tokens[l]`` the tokens left after block ``l`` (a merged or fused token
counts once), which the FLOP count uses.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.models.backbones import Backbone, BackboneBlock, Embedded, backbone_blocks
from iared_video.models.packed import PackedSeqs
from iared_video.models.policies import MODES
from iared_video.models.policy_model import PolicyOutput
from iared_video.models.token_ops import Attended, packed_attention_residual, packed_mlp_residual

__all__ = ["ReducedOutput", "ReducerState", "TokenReducer", "ReducingViT", "reducing_gmacs_per_sample"]


@dataclass
class ReducedOutput(PolicyOutput):
    """``PolicyOutput`` of a ``ReducingViT`` (D = depth), plus ``tokens``: per block ``(B,)`` tokens after it."""

    tokens: list[Tensor] = field(default_factory=list)


class ReducerState:
    """The tokens between two blocks: batched ``(B, P + n, C)``, prefix first, with what each token stands for.

    Attributes:
        x: the tokens.
        num_prefix: P.
        num_patches: N, patch tokens of the input.
        origin: ``(B, n)`` input patch index each token represents (the first patch it began as), -1 for a
            token that stands for no single patch (EViT's fused token); None when the forward records nothing
            (``record=False``: no bookkeeping beyond what the reduction itself needs).
        size: ``(B, n)`` number of input patches each token stands for (ToMe's ``s``); None while every token
            stands for one patch.
    """

    def __init__(self, emb: Embedded, record: bool = True) -> None:
        batch, num, _ = emb.patches.shape
        self.x = torch.cat([emb.prefix, emb.patches], dim=1)
        self.num_prefix, self.num_patches = emb.prefix.shape[1], num
        self.origin = torch.arange(num, device=self.x.device).expand(batch, num) if record else None
        self.size: Tensor | None = None
        self._seqs: PackedSeqs | None = None

    @property
    def record(self) -> bool:
        """Whether the origins (keep masks, scores) are tracked."""
        return self.origin is not None

    @property
    def patches(self) -> Tensor:
        """``(B, n, C)`` the non-prefix tokens."""
        return self.x[:, self.num_prefix:]

    def sizes(self) -> Tensor:
        """``(B, n)`` sizes (ones before any merge)."""
        return self.size if self.size is not None else self.x.new_ones(self.x.shape[0], self.patches.shape[1])

    @property
    def seqs(self) -> PackedSeqs:
        """Equal-length sequences of the packed ``(B * (P + n), C)`` view (rebuilt when ``n`` changes)."""
        batch, length = self.x.shape[:2]
        if self._seqs is None or self._seqs.uniform_length != length or self._seqs.batch_size != batch:
            self._seqs = PackedSeqs.from_lengths([length] * batch, self.x.device)
        return self._seqs

    def set_patches(self, patches: Tensor | Sequence[Tensor], origin: Tensor | None = None,
                    size: Tensor | None = None) -> None:
        """Replace the non-prefix tokens (given whole or as parts to concatenate) and what they stand for."""
        parts = [patches] if isinstance(patches, Tensor) else list(patches)
        self.x = torch.cat([self.x[:, :self.num_prefix], *parts], dim=1)  # one copy of the tokens
        self.origin, self.size = origin, size

    def _origin(self) -> Tensor:
        if self.origin is None:
            raise RuntimeError("this forward does not record origins (ReducerState(record=False))")
        return self.origin

    def scatter(self, values: Tensor) -> Tensor:
        """``(B, n)`` per-token values -> ``(B, N)`` at each token's origin, 0 elsewhere (fused tokens left out)."""
        origin = self._origin()
        full = values.new_zeros(values.shape[0], self.num_patches + 1)  # column N collects origin -1
        index = torch.where(origin < 0, self.num_patches, origin)
        return full.scatter(1, index, values)[:, :self.num_patches]

    def keep_mask(self) -> Tensor:
        """``(B, N)`` bool: input patches that are still a token's origin."""
        return self.scatter(torch.ones_like(self._origin(), dtype=torch.bool))


class TokenReducer(nn.Module, abc.ABC):
    """Reduces a block's tokens between its attention and its MLP.

    Attributes:
        needs_keys: ``reduce`` reads the attention's keys.
        needs_class_attention: ``reduce`` reads the class-token attention row.
    """

    needs_keys = False
    needs_class_attention = False

    @abc.abstractmethod
    def acts_on(self, layer: int) -> bool:
        """Whether block ``layer`` (0-based) reduces tokens."""

    def key_bias(self, state: ReducerState) -> Tensor | None:
        """``(B, P + n)`` additive attention-logit bias per key (None: plain attention)."""
        return None

    @abc.abstractmethod
    def reduce(self, layer: int, state: ReducerState, attended: Attended) -> Tensor | None:
        """Shrink ``state`` in place; return the ``(B, N)`` scores it decided by, at each token's origin before
        the reduction (``state.scatter``), or None when it has no scores or ``state.record`` is False.

        The origins (``state.origin``) are updated only when ``state.record``; sizes whenever they change."""

    def macs(self, layer: int, num_tokens: Tensor, num_prefix: int, block: Block) -> Tensor | int:
        """MACs per sample of the reduction at ``layer`` deciding on ``num_tokens`` non-prefix tokens."""
        return 0


class ReducingViT(nn.Module):
    """A backbone with ``embed``, ``blocks`` (timm blocks) and ``forward_head``, reduced by ``reducer``.

    Args:
        backbone: ``TimeSformer`` (joint space-time attention) or ``TimmViT``.
        reducer: the token reducer (stored as ``policy``, the attribute every wrapped model has).
    """

    output_type: type[ReducedOutput] = ReducedOutput

    def __init__(self, backbone: Backbone, reducer: TokenReducer) -> None:
        super().__init__()
        if any(hasattr(block, "temporal_attn") for block in backbone.blocks):
            raise ValueError("token reducers are implemented for joint space-time attention only")
        self.backbone, self.policy = backbone, reducer
        self.num_groups, self.group_size = len(backbone.blocks), 1  # one group per block

    def group_blocks(self, group: int) -> Sequence[BackboneBlock]:
        """Block ``group`` (0-based): every block is its own group."""
        return backbone_blocks(self.backbone.blocks[group:group + 1])

    def forward(self, x: Tensor, return_policy: bool = False,
                modes: Sequence[str] | None = None) -> Tensor | ReducedOutput:
        """Classify ``x``; with ``return_policy`` also return per-block keep masks, scores and token counts.

        Args:
            x: ``(B, C, T, H, W)`` clips or ``(B, C, H, W)`` images.
            return_policy: return a ``ReducedOutput`` instead of logits.
            modes: per block ``"greedy"`` (reduce where the reducer acts; ``"sample"`` is the same) or
                ``"keep_all"`` (no reduction there).
        """
        modes = list(modes) if modes is not None else ["greedy"] * self.num_groups
        if len(modes) != self.num_groups or any(m not in MODES for m in modes):
            raise ValueError(f"modes must be {self.num_groups} values from {MODES}, got {modes}")
        emb = self.backbone.embed(x)
        state = ReducerState(emb, record=return_policy)
        out = self.output_type(logits=x.new_empty(0), grid=emb.grid)
        for layer, block in enumerate(backbone_blocks(self.backbone.blocks)):
            acting = modes[layer] != "keep_all" and self.policy.acts_on(layer)
            scores = self._block(layer, cast(Block, block), state, acting)  # __init__ rejects divided blocks
            if return_policy:
                self._record(state, scores, out)
        out.logits = self.backbone.forward_head(state.x[:, :state.num_prefix])
        return out if return_policy else out.logits

    def _block(self, layer: int, block: Block, state: ReducerState, acting: bool) -> Tensor | None:
        """Attention on every token, the reduction, then the MLP on the tokens left; the reduction's scores."""
        batch, length, dim = state.x.shape
        bias = self.policy.key_bias(state)
        x, attended = packed_attention_residual(
            block, state.x.reshape(-1, dim), state.seqs, key_bias=None if bias is None else bias.flatten(),
            keys=acting and self.policy.needs_keys, class_row=acting and self.policy.needs_class_attention)
        state.x = x.view(batch, length, dim)
        scores = self.policy.reduce(layer, state, attended) if acting else None
        state.x = packed_mlp_residual(block, state.x.reshape(-1, dim), state.seqs).view(batch, -1, dim)
        return scores

    @staticmethod
    def _record(state: ReducerState, scores: Tensor | None, out: ReducedOutput) -> None:
        """Keep mask, scores and token count after a block (only with ``return_policy``)."""
        present = state.keep_mask()
        out.keep.append(present)
        out.scores.append(present.to(state.x.dtype) if scores is None else scores.detach())
        out.log_probs.append(None)
        out.tokens.append(torch.full((state.x.shape[0],), state.patches.shape[1], device=present.device))


def reducing_gmacs_per_sample(model: ReducingViT, tokens: ReducedOutput | Tensor | Sequence,
                              num_patches: int | None = None, modes: Sequence[str] | None = None) -> Tensor:
    """``(B,)`` GMACs per sample of a ``ReducingViT`` forward.

    Block l's attention half runs on the tokens entering it, its MLP half on the tokens left after its
    reduction, plus the reducer's own cost (``TokenReducer.macs``) where it acts; patch embedding and head
    as for every model.

    Args:
        model: the model.
        tokens: its ``ReducedOutput``, or ``(B, depth)`` non-prefix tokens left after each block.
        num_patches: N (required with raw counts).
        modes: the modes of the forward (default all ``"greedy"``).
    """
    from iared_video.models.flops import attention_part_macs, head_macs, mlp_part_macs, patch_embed_macs

    counts, num = _reduced_counts(tokens, num_patches)
    modes = list(modes) if modes is not None else ["greedy"] * model.num_groups
    if counts.shape[1] != model.num_groups or len(modes) != model.num_groups:
        raise ValueError(f"need {model.num_groups} blocks of counts and modes, got {counts.shape[1]} and {modes}")
    backbone, prefix = model.backbone, model.backbone.num_prefix_tokens
    macs = torch.full_like(counts[:, 0], float(patch_embed_macs(backbone, num) + head_macs(backbone)))
    entering = torch.full_like(counts[:, 0], float(num))
    for layer, module in enumerate(backbone.blocks):
        block = cast(Block, module)  # ReducingViT rejects divided space-time blocks
        macs = macs + attention_part_macs(block, entering + prefix) + mlp_part_macs(block, counts[:, layer] + prefix)
        if modes[layer] != "keep_all" and model.policy.acts_on(layer):
            macs = macs + model.policy.macs(layer, entering, prefix, block)
        entering = counts[:, layer]
    return macs / 1e9


def _reduced_counts(tokens: ReducedOutput | Tensor | Sequence, num_patches: int | None) -> tuple[Tensor, int]:
    if isinstance(tokens, ReducedOutput):
        return torch.stack(tokens.tokens, dim=1).double().cpu(), tokens.keep[0].shape[1]
    if isinstance(tokens, PolicyOutput):
        raise ValueError("a ReducingViT's FLOPs need its ReducedOutput (token counts), not a plain PolicyOutput")
    if num_patches is None:
        raise ValueError("num_patches (N before any reduction) is required with raw token counts")
    if not isinstance(tokens, Tensor):
        tokens = torch.stack([torch.as_tensor(c).reshape(-1) for c in tokens], dim=1)
    return tokens.double().cpu(), num_patches
