"""Models: backbones on packed variable-length tokens, the token-ops layer, drop policies, IA-RED^2, reducers.

The method that wraps a backbone (IA-RED^2, DynamicViT, ToMe, ...) is chosen and built in
``iared_video.methods`` (``build_model``).
"""

from iared_video.models.backbones import Embedded, TimeSformer, TimmViT
from iared_video.models.build import MODEL_REGISTRY, build_backbone
from iared_video.models.iared import IARED, PolicyOutput
from iared_video.models.interpreter import MultiHeadInterpreter
from iared_video.models.policies import (
                                         AttentionPolicy,
                                         DropPolicy,
                                         InterpreterPolicy,
                                         NoDropPolicy,
                                         RandomPolicy,
                                         TemporalDiffPolicy,
)
from iared_video.models.reduction import ReducedOutput, ReducingViT, TokenReducer

__all__ = [
    "MODEL_REGISTRY", "build_backbone", "IARED", "PolicyOutput", "Embedded",
    "TimeSformer", "TimmViT", "MultiHeadInterpreter", "DropPolicy", "InterpreterPolicy", "NoDropPolicy",
    "RandomPolicy", "AttentionPolicy", "TemporalDiffPolicy", "ReducingViT", "ReducedOutput", "TokenReducer",
]
