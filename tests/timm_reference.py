"""Independent references computed with timm's own modules, shared by the tests."""

from __future__ import annotations

from torch import Tensor, nn


def timm_class_attention(block: nn.Module, tokens: Tensor) -> Tensor:
    """timm's own ``Block`` forward (explicit-softmax path), its attention probabilities caught by a hook.

    Returns:
        ``(B, L)``: the head-averaged class-token row of the block's attention.
    """
    seen: dict[str, Tensor] = {}
    fused = block.attn.fused_attn
    block.attn.fused_attn = False  # timm then runs softmax -> attn_drop, where the hook reads the probabilities
    handle = block.attn.attn_drop.register_forward_hook(lambda m, i, o: seen.update(probs=o))
    try:
        block(tokens)
    finally:
        handle.remove()
        block.attn.fused_attn = fused
    return seen["probs"].mean(dim=1)[:, 0]
