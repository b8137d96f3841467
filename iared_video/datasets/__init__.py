"""Datasets: registry, Kinetics-style CSV videos, ImageNet-style image folders, loaders."""

from iared_video.datasets.build import DATASET_REGISTRY, build_dataset  # noqa: F401 (registry first)
from iared_video.datasets.imagenet import ImageNet  # noqa: F401 (registers "imagenet")
from iared_video.datasets.kinetics import Kinetics  # noqa: F401 (registers "kinetics")
from iared_video.datasets.loader import construct_loader, shuffle_dataset  # noqa: F401

__all__ = ["DATASET_REGISTRY", "build_dataset", "construct_loader", "shuffle_dataset", "Kinetics", "ImageNet"]
