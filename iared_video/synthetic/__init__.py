"""Generators of the embedded data sets: motion-only action videos, textured-object images, formula images.

The video set is the default data of the project (no downloads). Its classes differ *only* in how a small
actor moves over time, so a single frame cannot tell them apart: every random draw (size, length,
background, distractors, actor appearance and start pose, motion amplitudes, noise) is made before the
label is looked at, and every trajectory starts with zero displacement and zero rotation. Videos are
written as H.264 MP4 in the Kinetics CSV layout with per-frame ground-truth actor masks; the image variant
uses the ImageNet folder layout with per-image object masks. See ``datasets/SYNTHETIC.md``.

Modules, one concern each: ``knobs`` (class lists, knob dataclasses, presets), ``streams`` (random
streams), ``shapes``, ``backgrounds``, ``sprites`` (distractors, actor, trajectories), ``scenes``
(drawing and rendering a video), ``writers`` (MP4, masks, JSON), ``splits`` (labels and splits),
``videos`` and ``images`` (the data set entry points), ``formula`` (formula-driven pre-training images)
and ``parallel`` (the job runner). The mask readers live beside the datasets
(``iared_video.datasets.masks``) and are re-exported here, imported on first use so that generating a
set does not import the dataset package.
"""

from __future__ import annotations

from iared_video.synthetic import formula
from iared_video.synthetic.formula import generate_formula_dataset
from iared_video.synthetic.images import generate_image_dataset, render_image
from iared_video.synthetic.knobs import (
    ACTOR_SHAPES,
    DEFAULT_IMAGE_CLASSES,
    DEFAULT_NUM_IMAGES,
    DEFAULT_NUM_VIDEOS,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    IMAGE_CLASSES,
    IMAGE_DIFFICULTY,
    SPLITS,
    VIDEO_CLASSES,
    VIDEO_DIFFICULTY,
    VIDEO_VERSIONS,
    ImageKnobs,
    VideoKnobs,
    make_knobs,
)
from iared_video.synthetic.scenes import render_video, sample_video_spec
from iared_video.synthetic.shapes import Region
from iared_video.synthetic.splits import balanced_labels, stratified_splits
from iared_video.synthetic.streams import image_rng, video_rng
from iared_video.synthetic.videos import generate_video_dataset
from iared_video.synthetic.writers import save_masks, write_mp4

__all__ = [
    "GENERATOR_NAME", "GENERATOR_VERSION", "VIDEO_VERSIONS", "VIDEO_CLASSES", "IMAGE_CLASSES", "ACTOR_SHAPES",
    "DEFAULT_NUM_VIDEOS",
    "DEFAULT_NUM_IMAGES", "DEFAULT_IMAGE_CLASSES", "SPLITS", "VideoKnobs", "ImageKnobs", "VIDEO_DIFFICULTY",
    "IMAGE_DIFFICULTY", "make_knobs", "video_rng", "image_rng", "Region", "sample_video_spec", "render_video",
    "render_image", "write_mp4", "save_masks", "balanced_labels",
    "stratified_splits", "generate_video_dataset", "generate_image_dataset", "formula", "generate_formula_dataset",
]
