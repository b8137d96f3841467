"""oneDNN linear layers for CPU inference.

``aten::addmm`` sends fp32 CPU matmuls to the BLAS torch was built with (MKL on
x86 wheels). On some CPUs (measured: a 2-core AMD EPYC with AVX-512) oneDNN's
fp32 GEMM is much faster for the token counts of a ViT (dense DeiT-S at batch 1:
46.7 ms instead of 78.6 ms per forward in ``benchmarks/cpu-2core/deit_s_onednn.json``,
from ``tools/benchmark.py --cpu-linear onednn``).
:class:`OneDNNLinear` is an ``nn.Linear`` (same parameters, same state-dict
keys, same FLOP accounting) that takes the oneDNN path when nothing needs
gradients and falls back to ``F.linear`` otherwise; the oneDNN copy of the
weight is refreshed whenever the weight changes in place (optimiser step,
``load_state_dict``). fp32 only: under autocast the plain path runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OneDNNLinear", "use_onednn_linears", "onednn_available"]


def onednn_available() -> bool:
    """Whether this torch build has oneDNN (mkldnn) CPU kernels."""
    return torch.backends.mkldnn.is_available()


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose gradient-free fp32 CPU forward runs oneDNN's GEMM."""

    _packed: tuple[Tensor, Tensor] | None  # the oneDNN weight and bias, rebuilt when a parameter changes
    _packed_version: tuple[int, int | None] | None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> OneDNNLinear:
        """A ``OneDNNLinear`` sharing ``linear``'s parameter tensors (no copy of the dense weights)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias
        new.train(linear.training)
        new._packed, new._packed_version = None, None
        return new

    def _onednn_weights(self) -> tuple[Tensor, Tensor]:
        version = (self.weight._version, None if self.bias is None else self.bias._version)
        if self._packed is None or self._packed_version != version:
            with torch.no_grad():
                bias = self.bias if self.bias is not None else self.weight.new_zeros(self.out_features)
                self._packed = (self.weight.detach().to_mkldnn(), bias.detach().to_mkldnn())
            self._packed_version = version
        return self._packed

    def forward(self, x: Tensor) -> Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32
                or self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):
            return F.linear(x, self.weight, self.bias)
        weight, bias = self._onednn_weights()
        return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), weight, bias).to_dense()


def use_onednn_linears(module: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` under ``module`` by a :class:`OneDNNLinear` in place; returns the count.

    Raises:
        RuntimeError: this torch build has no oneDNN.
    """
    if not onednn_available():
        raise RuntimeError("this torch build has no oneDNN (torch.backends.mkldnn.is_available() is False)")
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, OneDNNLinear.from_linear(child))
                count += 1
    return count
