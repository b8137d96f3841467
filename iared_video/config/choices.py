"""The choice-valued config keys and their values, listed once.

``load_config``'s validation pass checks every key here; the modules that act on a value import its
tuple from here (for example ``interpret.heatmap.UPSAMPLE_MODES``), so a new value is added in one place.
Pure data: importing this module imports nothing else of the package.
"""

from __future__ import annotations

__all__ = ["VIDEO_MODELS", "MODEL_NAMES", "DEVICES", "DECODING_BACKENDS", "OPTIMIZERS", "AMP_DTYPES",
           "UPSAMPLE_MODES", "ANIMATION_FORMATS", "BINARIZE_RULES", "KEEP_SCHEDULES", "CPU_LINEARS", "PRECISIONS",
           "IMAGE_INTERPOLATIONS",            "PATCH_INFLATIONS", "TEMPORAL_SAMPLINGS", "CHOICES", "LIST_CHOICES"]

VIDEO_MODELS = ("timesformer",)  # MODEL.MODEL_NAME values that take clips (C, T, H, W); see ``is_video``
MODEL_NAMES = VIDEO_MODELS + ("deit",)
DEVICES = ("auto", "cpu", "cuda")
DECODING_BACKENDS = ("decord", "pyav")
TEMPORAL_SAMPLINGS = ("clip", "segment")  # datasets/video_sampling.py
OPTIMIZERS = ("sgd", "adam", "adamw")
AMP_DTYPES = ("bfloat16", "float16")
UPSAMPLE_MODES = ("nearest", "bilinear")
ANIMATION_FORMATS = ("gif", "mp4", "none")
BINARIZE_RULES = ("mean", "fixed", "otsu")
KEEP_SCHEDULES = ("geometric", "first")
CPU_LINEARS = ("aten", "onednn")
PRECISIONS = ("fp32", "bf16", "fp16")
PATCH_INFLATIONS = ("mean_diff", "mean", "central")  # 2-d patch weights -> a window of frames (models/weights.py)
IMAGE_INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos")  # timm's eval names

#: Keys whose value must be one of a fixed set. ``METHOD.NAME`` and ``BENCHMARK.METHODS_AT_KEEP`` take the method
#: registry's names and each method's section its own choices (``Method.choices``, checked by
#: ``iared_video.methods.config_errors``).
CHOICES: dict[str, tuple] = {
    "MODEL.MODEL_NAME": MODEL_NAMES,
    "MODEL.ATTENTION_TYPE": ("joint_space_time", "divided_space_time"),
    "MODEL.PATCH_FRAMES_INFLATION": PATCH_INFLATIONS,
    "DATA.DATASET": ("kinetics", "imagenet"),
    "DATA.DECODING_BACKEND": DECODING_BACKENDS,
    "DATA.TEMPORAL_SAMPLING": TEMPORAL_SAMPLINGS,
    "DATA.IMAGE_INTERPOLATION": IMAGE_INTERPOLATIONS,
    "SOLVER.OPTIMIZING_METHOD": OPTIMIZERS,
    "SOLVER.LR_POLICY": ("cosine", "constant"),
    "TRAIN.AMP_DTYPE": AMP_DTYPES,
    "TEST.NUM_SPATIAL_CROPS": (1, 3),
    "DIST_BACKEND": ("auto", "nccl", "gloo"),
    "DEVICE": DEVICES,
    "LOG_LEVEL": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "VISUALIZE.UPSAMPLE": UPSAMPLE_MODES,
    "VISUALIZE.ANIMATION": ANIMATION_FORMATS,
    "VISUALIZE.BINARIZE": BINARIZE_RULES,
    "BENCHMARK.KEEP_SCHEDULE": KEEP_SCHEDULES,
    "BENCHMARK.CPU_LINEAR": CPU_LINEARS,
}

#: List-valued keys whose every item must be one of a fixed set.
LIST_CHOICES: dict[str, tuple] = {
    "BENCHMARK.PRECISIONS": PRECISIONS,
}
