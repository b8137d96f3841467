"""Engine: trainer (dense, fixed-ratio and the IA-RED^2 curriculum), tester, meters, checkpoints, DDP, logging."""

from iared_video.engine.curriculum import Stage, build_stages, eval_modes, set_trainable, train_modes
from iared_video.engine.distributed import DistInfo, is_master, launch_job
from iared_video.engine.logging import log_json_stats, setup_logging
from iared_video.engine.meters import TestMeter, TrainMeter, ValMeter, aggregate_views
from iared_video.engine.reinforce import policy_gradient_loss, reward, self_critical_advantage
from iared_video.engine.tester import test
from iared_video.engine.trainer import train

__all__ = [
    "Stage", "build_stages", "eval_modes", "set_trainable", "train_modes", "DistInfo", "is_master", "launch_job",
    "log_json_stats", "setup_logging", "TestMeter", "TrainMeter", "ValMeter", "aggregate_views",
    "policy_gradient_loss", "reward", "self_critical_advantage", "test", "train",
]
