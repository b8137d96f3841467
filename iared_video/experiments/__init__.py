"""Experiment recipes built on the runtime (pre-training, main job, ...); the runtime never imports this package."""
