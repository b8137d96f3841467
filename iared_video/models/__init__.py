"""Models: backbones on packed variable-length tokens, the token-ops layer, the drop-policy interface, reducers.

The method that wraps a backbone (its policy or reducer) is chosen and built in ``iared_video.methods``
(``build_model``).
"""

from iared_video.models.backbones import Embedded, TimeSformer, TimmViT
from iared_video.models.build import MODEL_REGISTRY, build_backbone
from iared_video.models.policies import DropPolicy, NoDropPolicy
from iared_video.models.policy_model import PolicyModel, PolicyOutput
from iared_video.models.reduction import ReducedOutput, ReducingViT, TokenReducer

__all__ = [
    "MODEL_REGISTRY", "build_backbone", "PolicyModel", "PolicyOutput", "Embedded", "TimeSformer", "TimmViT",
    "DropPolicy", "NoDropPolicy", "ReducingViT", "ReducedOutput", "TokenReducer",
]
