"""What the visualiser reads: input files (a video, an image, a folder or a split CSV) and class names.

Preprocessing is the test-view layer's (``iared_video.datasets.views``): the centre clip and centre crop
for video models, timm's eval transform for image models.
"""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from iared_video.datasets.views import ViewSpec, load_image_view, load_video_view, view_spec
from iared_video.utils.cli import InputError

__all__ = ["InputSpec", "input_spec", "VIDEO_EXTENSIONS", "looks_like_image", "collect_inputs", "load_input",
           "load_with_indices", "class_names"]

InputSpec = ViewSpec  # the name the visualiser has always used for the test view of one input
input_spec = view_spec
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


def looks_like_image(path: str) -> bool:
    """True for a file Pillow reads (by extension, else by trying to open it)."""
    from iared_video.datasets.imagenet import IMG_EXTENSIONS

    ext = os.path.splitext(path)[1].lower()
    if ext in IMG_EXTENSIONS:
        return True
    if ext in VIDEO_EXTENSIONS:
        return False
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def _folder_files(folder: str) -> list[str]:
    """Image and video files under ``folder`` (recursive, sorted, symlinks followed)."""
    from iared_video.datasets.imagenet import IMG_EXTENSIONS

    found = []
    for root, _, files in sorted(os.walk(folder, followlinks=True)):
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS + VIDEO_EXTENSIONS)]
    return found


def collect_inputs(source: str, data_dir: str = "", separator: str = " ", prefix: str = "") -> list[str]:
    """Files named by ``source``: a video or image file, a folder (recursive) or a split CSV.

    Raises:
        FileNotFoundError: ``source`` does not exist; InputError: nothing usable in it.
    """
    if not os.path.exists(source):
        raise FileNotFoundError(f"visualisation input {source!r} does not exist")
    if os.path.isdir(source):
        files = _folder_files(source)
    elif source.lower().endswith((".csv", ".txt")):
        from iared_video.datasets.kinetics import read_split_csv

        files = read_split_csv(source, separator, prefix, data_dir or os.path.dirname(source))[0]
    else:
        files = [source]
    if not files:
        raise InputError(f"{source} holds no image or video files")
    return files


def load_with_indices(path: str, spec: ViewSpec) -> tuple[Tensor, list[int] | None]:
    """``load_input`` plus the video frame indices (None for images)."""
    image = looks_like_image(path)
    if image and spec.is_video:
        raise ValueError(f"{path} is an image but the model is a video model (MODEL.MODEL_NAME timesformer)")
    if not image and not spec.is_video:
        raise ValueError(f"{path} is not an image Pillow can read, and the model is an image model")
    return load_video_view(path, spec) if spec.is_video else (load_image_view(path, spec), None)


def load_input(path: str, spec: ViewSpec) -> Tensor:
    """One preprocessed model input: ``(C, T, H, W)`` for video models, ``(C, H, W)`` for image models.

    Raises:
        ValueError: an image given to a video model or a video given to an image model.
        iared_video.datasets.bad_data.SampleError: the file cannot be decoded (reason in the message).
    """
    return load_with_indices(path, spec)[0]


def class_names(path: str, num_classes: int) -> list[str]:
    """Class names by id from a ``{name: id}`` json (or one name per line); ``class_<i>`` otherwise."""
    names = [f"class_{i}" for i in range(num_classes)]
    if path and os.path.isfile(path):
        from iared_video.datasets.kinetics import load_class_names

        for name, idx in load_class_names(path).items():
            if 0 <= idx < num_classes:
                names[idx] = name
    return names
