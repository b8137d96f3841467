"""Attribution baselines on the patch grid, for the dense backbone (all tokens, nothing dropped).

Every method maps an input (``(B, 3, T, H, W)`` clip or ``(B, 3, H, W)`` image) to ``(B, N)``
patch scores in the backbone's token order ``n = t * (h * w) + y * w + x``, so the heatmap and
metric code of ``interpret`` applies unchanged:

* ``raw_attention``: class-token attention of one block (default ``blocks[1]``, the paper's Block_1, the
  second block), averaged over heads;
* ``rollout``: attention rollout (Abnar & Zuidema 2020): head-averaged attention plus the
  residual identity, ``0.5 A + 0.5 I``, multiplied over the blocks;
* ``gradcam``: the ``grad-cam`` package's GradCAM on the last block's ``norm1`` output, tokens
  reshaped to a ``(T * h, w)`` grid (frames stacked along the height, so no 3-d CAM is needed);
* ``grad_attention``: gradient-weighted attention relevance in the style of Chefer et al. 2021:
  per block ``Abar = mean_heads((dy/dA * A)^+)``, accumulated as ``R <- R + Abar R`` from ``R = I``.

``dense_forward`` is the explicit-attention forward they share: the token-ops layer's dense forward
(``models/backbones.py``) with the per-block attention probabilities (gradients kept on request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from einops import rearrange
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from iared_video.methods.fixed_ratio import PAPER_ATTENTION_BLOCK
from iared_video.models.backbones import Backbone, DenseTrace
from iared_video.models.backbones import dense_forward as _dense_forward
from iared_video.models.token_ops import block_forward

__all__ = ["DenseTrace", "dense_forward", "rollout", "grad_weighted_rollout", "raw_attention", "attention_rollout",
           "gradcam", "grad_attention", "BASELINES", "logits_on_tokens", "deletion_insertion"]


def dense_forward(backbone: Backbone, x: Tensor, keep_grad: bool = False) -> DenseTrace:
    """All tokens through every block with explicit attention (``backbones.dense_forward`` with probabilities).

    Args:
        backbone: ``TimeSformer`` or ``TimmViT`` (``model.backbone`` of a ``PolicyModel`` model).
        x: the backbone's input.
        keep_grad: retain the gradients of the attention maps (``attn.grad`` after ``backward``).
    """
    return _dense_forward(backbone, x, probs=True, keep_grad=keep_grad)


def rollout(attentions: list[Tensor], num_prefix: int) -> Tensor:
    """Attention rollout: ``R = prod_b (0.5 mean_h A_b + 0.5 I)`` (rows renormalised); class row over patches."""
    result = None
    for attn in attentions:
        a = attn.mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None, "attention rollout needs at least one block"
    return result[:, 0, num_prefix:]


def grad_weighted_rollout(attentions: list[Tensor], grads: list[Tensor], num_prefix: int) -> Tensor:
    """Chefer-style relevance: ``R <- R + mean_h((grad * A)^+) R`` from ``R = I``; class row over patches."""
    first = attentions[0]
    relevance = torch.eye(first.shape[-1], device=first.device, dtype=first.dtype).expand(first.shape[0], -1, -1)
    for attn, grad in zip(attentions, grads):
        cam = (grad * attn).clamp_min(0).mean(dim=1)
        relevance = relevance + cam @ relevance
    return relevance[:, 0, num_prefix:]


def _targets(logits: Tensor, target: Tensor | None) -> Tensor:
    return logits.argmax(dim=-1) if target is None else target.to(logits.device)


@torch.no_grad()
def raw_attention(backbone: Backbone, x: Tensor, target: Tensor | None = None,
                  block: int = PAPER_ATTENTION_BLOCK) -> Tensor:
    """Class-token attention of ``blocks[block]`` (0-based), head-averaged: ``(B, N)``. ``target`` is unused."""
    if not 0 <= block < len(backbone.blocks):
        raise ValueError(f"attention block {block} does not exist in a {len(backbone.blocks)}-block backbone")
    trace = dense_forward(backbone, x)
    return trace.attentions[block].mean(dim=1)[:, 0, trace.num_prefix:]


@torch.no_grad()
def attention_rollout(backbone: Backbone, x: Tensor, target: Tensor | None = None) -> Tensor:
    """Attention rollout, ``(B, N)``. ``target`` is unused (class-agnostic)."""
    trace = dense_forward(backbone, x)
    return rollout(trace.attentions, trace.num_prefix)


def grad_attention(backbone: Backbone, x: Tensor, target: Tensor | None = None) -> Tensor:
    """Gradient-weighted attention relevance for ``target`` (default: the predicted class), ``(B, N)``."""
    with torch.enable_grad():
        trace = dense_forward(backbone, x, keep_grad=True)
        classes = _targets(trace.logits, target)
        chosen = trace.logits.gather(1, classes[:, None]).sum()
        grads = torch.autograd.grad(chosen, trace.attentions)
    return grad_weighted_rollout([a.detach() for a in trace.attentions], list(grads), trace.num_prefix).detach()


class _DenseClassifier(nn.Module):
    """``x -> logits`` through ``dense_forward`` (so grad-cam's hooks see the block modules)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return dense_forward(self.backbone, x).logits


def _grid_cam_class():
    from pytorch_grad_cam import GradCAM

    class GridGradCAM(GradCAM):
        """GradCAM whose output stays on the token grid ``(T * h, w)`` instead of the input size."""

        grid_hw: tuple[int, int] = (1, 1)

        def get_target_width_height(self, input_tensor: Tensor) -> tuple[int, int]:
            return self.grid_hw[1], self.grid_hw[0]

    return GridGradCAM


def gradcam(backbone: Backbone, x: Tensor, target: Tensor | None = None) -> Tensor:
    """GradCAM (``grad-cam`` package) on the last block's ``norm1``; ``(B, N)``, each map scaled to [0, 1]."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with torch.no_grad():
        emb = backbone.embed(x)
    (frames, h, w), prefix = emb.grid, emb.prefix.shape[1]

    def reshape(tokens: Tensor) -> Tensor:  # patch tokens to a (B, C, T*h, w) map: frames stacked along height
        return rearrange(tokens[:, prefix:], "b (t h w) c -> b c (t h) w", t=frames, h=h, w=w)

    wrapper = _DenseClassifier(backbone).eval()
    cam = _grid_cam_class()(wrapper, [backbone.blocks[-1].norm1], reshape_transform=reshape)
    cam.grid_hw = (frames * h, w)
    targets = None if target is None else [ClassifierOutputTarget(int(t)) for t in target]
    with torch.enable_grad():
        maps = cam(input_tensor=x, targets=targets)  # (B, T*h, w) numpy
    cam.activations_and_grads.release()
    return torch.from_numpy(np.ascontiguousarray(maps)).reshape(x.shape[0], -1).to(x.device)


BASELINES: dict[str, Callable[..., Tensor]] = {
    "raw_attention": raw_attention,
    "rollout": attention_rollout,
    "gradcam": gradcam,
    "grad_attention": grad_attention,
}


@torch.no_grad()
def logits_on_tokens(backbone: Backbone, x: Tensor, keep_index: Tensor) -> Tensor:
    """Logits when only the patch tokens ``keep_index`` ``(B, K)`` (plus prefix tokens) enter the blocks."""
    emb = backbone.embed(x)
    index = keep_index[..., None].expand(-1, -1, emb.patches.shape[-1])
    tokens = torch.cat([emb.prefix, emb.patches.gather(1, index)], dim=1)
    for block in backbone.blocks:
        tokens = block_forward(cast(Block, block), tokens, drop_path=False)[0]
    return backbone.forward_head(tokens[:, :emb.prefix.shape[1]])


@torch.no_grad()
def deletion_insertion(backbone: Backbone, x: Tensor, scores: Tensor, target: Tensor,
                       steps: int = 8) -> dict[str, Tensor]:
    """Faithfulness curves: ``target`` probability as patch tokens are removed / inserted in ``scores`` order.

    Tokens are removed physically (a ViT takes any token subset), so no replacement colour is needed.
    Deletion at fraction f keeps the ``(1 - f) N`` lowest-scored tokens; insertion keeps the ``f N``
    highest-scored ones (f = 0: the class token alone).

    Returns:
        ``fractions (S,)``, ``deletion (B, S)``, ``insertion (B, S)`` probabilities (lower deletion
        and higher insertion area = more faithful).
    """
    num = scores.shape[1]
    order = scores.argsort(dim=1, descending=True)
    fractions = torch.linspace(0, 1, steps + 1)
    curves: dict[str, list[Tensor]] = {"deletion": [], "insertion": []}
    for f in fractions.tolist():
        top = int(round(f * num))
        for name, index in (("deletion", order[:, top:]), ("insertion", order[:, :top])):
            probs = logits_on_tokens(backbone, x, index).softmax(-1)
            curves[name].append(probs.gather(1, target[:, None].to(probs.device))[:, 0])
    return {"fractions": fractions, **{k: torch.stack(v, dim=1) for k, v in curves.items()}}
