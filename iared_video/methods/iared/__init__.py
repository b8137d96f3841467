"""IA-RED^2: the method (policy, Alg. 1's stages, FLOPs, benchmark variants) and its REINFORCE."""

from iared_video.methods.iared.method import (
    IARED2,
    ControlledKeepPolicy,
    RewardOptions,
    reinforce_step,
    threshold_policy,
    topk_per_sample,
)

__all__ = ["IARED2", "RewardOptions", "reinforce_step", "ControlledKeepPolicy", "topk_per_sample", "threshold_policy"]
