"""The multi-head interpreter of IA-RED^2 (Eq. 1 of the paper) and its FLOP count."""

from __future__ import annotations

import math

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from iared_video.models.flops import Count, linear_macs

__all__ = ["MultiHeadInterpreter", "interpreter_macs"]


class MultiHeadInterpreter(nn.Module):
    """Informative score of each patch token entering a group.

    ``I_i = 1/H * sum_h sigmoid(F_q^h(X_i) . F_k^h(P))`` with a learned policy
    token ``P`` and per-head linear maps ``F_q^h`` (patch tokens) and ``F_k^h``
    (policy token). The per-head maps are stored stacked in one ``nn.Linear``
    each (head ``h`` owns output rows ``h*head_dim:(h+1)*head_dim``).

    Args:
        dim: token width.
        num_heads: H.
        head_dim: output width of each ``F_q^h`` / ``F_k^h``.
        init_score: every token's score at initialisation (so the keep rate REINFORCE starts sampling at).
        hidden: 0 (the paper) or the width of a GELU layer the tokens pass before ``F_q`` (``F_q^h`` becomes a
            one-hidden-layer MLP shared by the heads up to its last layer).

    The weights start small (std 0.02) and the biases do not: ``b_k`` is a unit vector per head and ``b_q``
    its multiple with ``b_q . b_k = logit(init_score)``. With both biases zero, ``F_q . F_k`` would start at
    the bilinear saddle, where each map's gradient is scaled by the other's (0.02-sized) output.
    """

    def __init__(self, dim: int, num_heads: int = 4, head_dim: int = 64, init_score: float = 0.5,
                 hidden: int = 0) -> None:
        super().__init__()
        if not 0.0 < init_score < 1.0:
            raise ValueError(f"init_score must lie in (0, 1), got {init_score}")
        if hidden < 0:
            raise ValueError(f"hidden must be 0 (linear F_q) or a positive width, got {hidden}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.policy_token = nn.Parameter(torch.zeros(1, dim))
        self.hidden = nn.Sequential(nn.Linear(dim, hidden), nn.GELU()) if hidden else nn.Identity()
        self.query = nn.Linear(hidden or dim, num_heads * head_dim)  # F_q^h, h = 1..H (its last layer)
        self.key = nn.Linear(dim, num_heads * head_dim)  # F_k^h, h = 1..H
        trunc_normal_(self.policy_token, std=0.02)
        for layer in (self.query, self.key):
            trunc_normal_(layer.weight, std=0.02)
        unit = head_dim ** -0.5
        nn.init.constant_(self.key.bias, unit)
        nn.init.constant_(self.query.bias, math.log(init_score / (1.0 - init_score)) * unit)
        self._fold_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None  # see ``_folded``

    def head_logits(self, tokens: Tensor) -> Tensor:
        """``F_q^h(X_i) . F_k^h(P)`` for every head: ``(..., C) -> (..., H)``.

        The key ``k_h = F_k^h(P)`` is one vector per head, so each head's logit is linear in the token:
        ``(W_q^h X + b_q^h) . k_h = X . (W_q^h^T k_h) + b_q^h . k_h``. The maps are folded first (``H x C``
        weights, a few hundred MACs) and the tokens meet ``H`` outputs instead of ``H * head_dim``; the
        function and its gradients are the same.
        """
        folded, bias = self._folded()
        return nn.functional.linear(self.hidden(tokens), folded, bias)

    def _folded(self) -> tuple[Tensor, Tensor]:
        """``(H x C)`` folded weight and ``(H,)`` bias of ``head_logits``. Without autograd and autocast (a model
        serving) they are kept until a parameter changes (in place, as an optimiser step or a load does, or by
        being replaced): five kernel calls less per forward, the same values. A write through ``param.data``
        bypasses the version counter this relies on; write to the parameter itself under ``torch.no_grad()``."""
        params = (self.query.weight, self.query.bias, self.key.weight, self.key.bias, self.policy_token)
        cacheable = not torch.is_grad_enabled() and not torch.is_autocast_enabled(self.policy_token.device.type)
        stamp = tuple((p.data_ptr(), p._version) for p in params) if cacheable else None
        if stamp is not None and self._fold_cache is not None and self._fold_cache[0] == stamp:
            return self._fold_cache[1]
        weight = self.query.weight.view(self.num_heads, self.head_dim, -1)
        key = self.key(self.policy_token).view(self.num_heads, self.head_dim).to(weight.dtype)  # autocast: bf16
        folded = torch.einsum("hdc,hd->hc", weight, key)
        bias = (self.query.bias.view(self.num_heads, self.head_dim) * key).sum(-1)
        self._fold_cache = None if stamp is None else (stamp, (folded, bias))
        return folded, bias

    def forward(self, tokens: Tensor) -> Tensor:
        """Informative scores in (0, 1): ``(..., C) -> (...)``."""
        return self.head_logits(tokens).sigmoid().mean(-1)


def interpreter_macs(interpreter: MultiHeadInterpreter, num_scored: Count) -> Count:
    """The folded map on the scored tokens (``C * H`` each; ``MultiHeadInterpreter.head_logits``); with a hidden
    layer of width W each scored token also meets the ``C x W`` hidden layer and the folded map is ``W x H``.
    ``F_k`` on the policy token and the fold depend on the weights only: a serving model computes them once
    (``MultiHeadInterpreter._folded``), so they are not part of a forward's cost."""
    hidden = sum(linear_macs(m) for m in interpreter.hidden.modules() if isinstance(m, nn.Linear))
    return num_scored * (hidden + interpreter.num_heads * interpreter.query.in_features)
