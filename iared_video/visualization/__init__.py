"""Visualise IA-RED^2 decisions: per-group heatmaps and kept-patch panels for videos and images.

``run_visualize(cfg)`` is the ``VISUALIZE.ENABLE`` stage (and ``tools/visualize.py``): for every
input in ``VISUALIZE.INPUT`` (a video, an image, a folder or a split CSV; "" for the test split)
it writes under ``OUTPUT_DIR/vis/``:

* ``<stem>_figure.png``: the labelled figure to look at (``visualization.figure``): the input beside
  each group's score overlay (patches dropped by earlier groups grey) and the kept patches, every
  row and column labelled (frame index, group, keep ratio), one colour bar, the prediction and the
  weights (file and sha256, or random initialisation) in the title;
* ``<stem>_heatmap.png``: the bare grid for programs: row 0 the frames the model saw, row 1 + j the
  informative scores of group j over them, patches dropped by earlier groups grey (columns are frames);
* ``<stem>_keep.png``: row 0 the frames, row 1 + j the frames with the patches dropped up to and
  including group j painted flat grey (``overlay.GREY``), the remaining ratio in the corner;
* ``<stem>.gif`` / ``.mp4`` for videos: per frame the labelled figure of that frame (same layout);
* ``<stem>.json``: top-5 classes (names from the class-names file when present), keep ratios, the
  weights used and the per-group keep masks on the patch grid ``(T, h, w)``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from iared_video.datasets.bad_data import SampleError
from iared_video.interpret.heatmap import UPSAMPLE_MODES, keep_masks, policy_heatmaps
from iared_video.utils.cli import InputError
from iared_video.visualization.figure import FigureData, animation_frames, figure_to_array, heatmap_figure
from iared_video.visualization.overlay import grey_dropped, overlay_heatmap, tile, to_uint8_frames, write_label
from iared_video.visualization.writers import ANIMATION_FORMATS, save_animation, save_json, save_png

logger = logging.getLogger(__name__)

__all__ = ["InputSpec", "VisOptions", "RANDOM_WEIGHTS", "input_spec", "collect_inputs", "looks_like_image",
           "load_input", "visualize_input", "class_names", "describe_weights", "build_vis_model", "run_visualize"]

RANDOM_WEIGHTS = "random initialisation — pass --checkpoint for meaningful heatmaps"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


@dataclass
class InputSpec:
    """How a file becomes a model input (test-time preprocessing)."""

    is_video: bool
    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    num_frames: int = 8
    sampling_rate: int = 8
    target_fps: float = 30.0
    backend: str = "decord"
    crop_pct: float = 0.875
    interpolation: str = "bicubic"


@dataclass
class VisOptions:
    """Rendering choices."""

    upsample: str = "nearest"
    alpha: float = 0.5
    animation: str = "gif"
    fps: float = 4.0
    threshold: float | None = None  # drop threshold of the scores (drawn on the colour bar), if any


def input_spec(cfg) -> InputSpec:
    """The test preprocessing of ``cfg`` (video models: centre clip and centre crop)."""
    d = cfg.DATA
    return InputSpec(cfg.MODEL.MODEL_NAME == "timesformer", d.TEST_CROP_SIZE, list(d.MEAN), list(d.STD),
                     d.NUM_FRAMES, d.SAMPLING_RATE, d.TARGET_FPS, d.DECODING_BACKEND, d.IMAGE_CROP_PCT,
                     d.IMAGE_INTERPOLATION)


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


def _load_video(path: str, spec: InputSpec) -> tuple[Tensor, list[int]]:
    """The preprocessed clip and the indices of its frames in the video."""
    from iared_video.datasets.decoder import decode_clip
    from iared_video.datasets.transforms import apply_video_transform, video_test_transform
    from iared_video.datasets.video_sampling import clip_indices

    index_fn = functools.partial(clip_indices, num_frames=spec.num_frames, sampling_rate=spec.sampling_rate,
                                 target_fps=spec.target_fps, clip_idx=0, num_clips=1)
    clip = decode_clip(path, index_fn, spec.backend, fallback=True)
    video = apply_video_transform(clip.frames, video_test_transform(spec.crop_size, 1, spec.mean, spec.std))
    return video, [int(i) for i in clip.indices]


def _load_image(path: str, spec: InputSpec) -> Tensor:
    from iared_video.datasets.imagenet import load_rgb_image
    from iared_video.datasets.transforms import image_transform

    transform = image_transform(False, spec.crop_size, spec.mean, spec.std, crop_pct=spec.crop_pct,
                                interpolation=spec.interpolation)
    return transform(load_rgb_image(path))


def _load(path: str, spec: InputSpec) -> tuple[Tensor, list[int] | None]:
    """``load_input`` plus the video frame indices (None for images)."""
    image = looks_like_image(path)
    if image and spec.is_video:
        raise ValueError(f"{path} is an image but the model is a video model (MODEL.MODEL_NAME timesformer)")
    if not image and not spec.is_video:
        raise ValueError(f"{path} is not an image Pillow can read, and the model is an image model")
    return _load_video(path, spec) if spec.is_video else (_load_image(path, spec), None)


def load_input(path: str, spec: InputSpec) -> Tensor:
    """One preprocessed model input: ``(C, T, H, W)`` for video models, ``(C, H, W)`` for image models.

    Raises:
        ValueError: an image given to a video model or a video given to an image model.
        iared_video.datasets.bad_data.SampleError: the file cannot be decoded (reason in the message).
    """
    return _load(path, spec)[0]


def class_names(path: str, num_classes: int) -> list[str]:
    """Class names by id from a ``{name: id}`` json (or one name per line); ``class_<i>`` otherwise."""
    names = [f"class_{i}" for i in range(num_classes)]
    if path and os.path.isfile(path):
        from iared_video.datasets.kinetics import load_class_names

        for name, idx in load_class_names(path).items():
            if 0 <= idx < num_classes:
                names[idx] = name
    return names


def _entering(keep: np.ndarray) -> np.ndarray:
    """``(D, T, H, W)`` bool: pixel's patch enters group j (present after group j - 1; all for group 1)."""
    return np.concatenate([np.ones_like(keep[:1]), keep[:-1]]).astype(bool)


def _panels(frames: np.ndarray, heat: np.ndarray, keep: np.ndarray, ratios: Sequence[float],
            opts: VisOptions) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Heatmap rows and keep rows (``[group][frame]``) for one sample; ``heat``/``keep`` are ``(D, T, H, W)``."""
    entering = _entering(keep)
    heat_rows = [[write_label(grey_dropped(overlay_heatmap(f, h, opts.alpha), e), f"g{g + 1} score")
                  for f, h, e in zip(frames, group, entering[g])] for g, group in enumerate(heat)]
    keep_rows = [[write_label(grey_dropped(f, k), f"g{g + 1} keep {ratios[g]:.2f}") for f, k in zip(frames, group)]
                 for g, group in enumerate(keep)]
    return heat_rows, keep_rows


def _summary(path: str, logits: Tensor, ratios: Sequence[float], keep_grid: Tensor,
             names: Sequence[str]) -> dict[str, Any]:
    probs = logits.softmax(-1)
    top = probs.topk(min(5, probs.numel()))
    return {
        "input": path,
        "predictions": [{"class": names[int(i)], "id": int(i), "score": float(p)}
                        for p, i in zip(top.values, top.indices)],
        "keep_ratio": [float(r) for r in ratios],
        "keep_grid": keep_grid.int().tolist(),  # (D, T, h, w), 1 = patch still present after group j
    }


def _figure_data(frames: np.ndarray, heat: np.ndarray, keep: np.ndarray, summary: dict[str, Any],
                 frame_indices: Sequence[int] | None, weights: str, opts: VisOptions) -> FigureData:
    top = summary["predictions"][0]
    labels = [f"frame {i}" for i in frame_indices] if frame_indices else ["image"] * len(frames)
    return FigureData(frames, heat, keep, summary["keep_ratio"], labels, f"{top['class']} (p={top['score']:.2f})",
                      weights, opts.threshold, os.path.basename(summary["input"]), opts.alpha)


@torch.no_grad()
def visualize_input(model: nn.Module, x: Tensor, spec: InputSpec, names: Sequence[str], out_stem: str,
                    opts: VisOptions, source: str = "", weights: str = "",
                    frame_indices: Sequence[int] | None = None) -> dict[str, Any]:
    """Run the model on one preprocessed input and write its figure, PNGs, animation and json (see module doc).

    Args:
        weights: which weights ``model`` holds (``describe_weights``), written into the figure's title.
        frame_indices: the video frames ``x`` holds (their labels in the figure); None for images.
    """
    device = next(model.parameters()).device
    out = model(x.unsqueeze(0).to(device), return_policy=True)
    size = x.shape[-2:]
    heat = policy_heatmaps(out.scores, out.grid, size, opts.upsample)[0].clamp(0, 1).cpu().numpy()
    keep = keep_masks(out.keep, out.grid, size)[0].cpu().numpy()
    ratios = [float(k[0].float().mean()) for k in out.keep]
    frames = to_uint8_frames(x, spec.mean, spec.std)
    keep_grid = torch.stack([k[0].reshape(out.grid) for k in out.keep]).cpu()
    summary = _summary(source, out.logits[0].float().cpu(), ratios, keep_grid, names)
    data = _figure_data(frames, heat, keep, summary, frame_indices, weights, opts)
    heat_rows, keep_rows = _panels(frames, heat, keep, ratios, opts)
    files = {"figure": save_png(figure_to_array(heatmap_figure(data)), f"{out_stem}_figure.png"),
             "heatmap": save_png(tile([list(frames)] + heat_rows), f"{out_stem}_heatmap.png"),
             "keep": save_png(tile([list(frames)] + keep_rows), f"{out_stem}_keep.png")}
    if spec.is_video:
        files["animation"] = save_animation(animation_frames(data), out_stem, opts.animation, opts.fps)
    summary["weights"] = weights
    summary["files"] = {k: v for k, v in files.items() if v}
    save_json(summary, f"{out_stem}.json")
    return summary


def _sha256(path: str) -> str:
    """Hex sha256 of a file (cached while its size and modification time stay the same)."""
    return _sha256_of(os.path.abspath(path), os.path.getsize(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_weights(cfg, short: bool = False) -> str:
    """Which weights ``build_vis_model(cfg)`` loads: each file (MODEL.PRETRAINED, TEST.CHECKPOINT_FILE_PATH)
    with its sha256 (``short``: file name and 12 hex digits), or ``RANDOM_WEIGHTS``."""
    files = [p for p in (cfg.MODEL.PRETRAINED, cfg.TEST.CHECKPOINT_FILE_PATH) if p and os.path.isfile(p)]
    if not files:
        return RANDOM_WEIGHTS
    parts = [f"{os.path.basename(p) if short else p} (sha256 {_sha256(p)[:12] if short else _sha256(p)})"
             for p in files]
    note = "" if cfg.TEST.CHECKPOINT_FILE_PATH else " — backbone only: pass --checkpoint for meaningful heatmaps"
    return " + ".join(parts) + note


def build_vis_model(cfg) -> nn.Module:
    """``build_model(cfg)`` (which loads MODEL.PRETRAINED) plus TEST.CHECKPOINT_FILE_PATH when set, in eval mode."""
    from iared_video.models.build import build_model
    from iared_video.models.weights import load_pretrained

    model = build_model(cfg)
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        load_pretrained(model, cfg.TEST.CHECKPOINT_FILE_PATH)
    wanted = str(getattr(cfg, "DEVICE", "cpu"))
    device = "cuda" if wanted in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def _vis_options(cfg) -> VisOptions:
    v = cfg.VISUALIZE
    if v.UPSAMPLE not in UPSAMPLE_MODES or v.ANIMATION not in ANIMATION_FORMATS or not 0 <= v.ALPHA <= 1:
        raise ValueError(f"VISUALIZE.UPSAMPLE must be in {UPSAMPLE_MODES}, VISUALIZE.ANIMATION in "
                         f"{ANIMATION_FORMATS}, VISUALIZE.ALPHA in [0, 1]; got {v.UPSAMPLE!r}, {v.ANIMATION!r}, {v.ALPHA}")
    from iared_video.methods import method_for_cfg
    from iared_video.models.policies import InterpreterPolicy

    thresholded = issubclass(method_for_cfg(cfg).policy_type, InterpreterPolicy)  # its scores meet a threshold
    threshold = float(cfg.IARED.THRESHOLD) if thresholded else None
    return VisOptions(v.UPSAMPLE, float(v.ALPHA), v.ANIMATION, float(v.FPS), threshold)


def _default_source(cfg) -> str:
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if cfg.MODEL.MODEL_NAME == "timesformer":
        return os.path.join(data_dir, f"{cfg.TEST.SPLIT}.csv")
    test_dir = os.path.join(data_dir, cfg.TEST.SPLIT)
    return test_dir if os.path.isdir(test_dir) else os.path.join(data_dir, "val")


def _stem(path: str, index: int) -> str:
    base = os.path.splitext(os.path.basename(path))[0] or "input"
    return f"{index:04d}_{base}"


def _try_load(path: str, spec: InputSpec, failures: list[str], log: bool) -> tuple[Tensor, list[int] | None] | None:
    """``_load`` that records a failure (and logs it when ``log``) and returns None instead of raising."""
    try:
        return _load(path, spec)
    except (ValueError, OSError, RuntimeError) as exc:  # SampleError/DecodeError are RuntimeErrors
        reason = exc.reason if isinstance(exc, SampleError) else str(exc)
        if log:
            logger.warning("cannot visualise %s: %s", path, reason)
        failures.append(f"{path}: {reason}")
        return None


def _no_results_message(failures: list[str]) -> str:
    """One line for "nothing could be visualised": the reason itself for a single input."""
    if len(failures) == 1:
        return f"cannot visualise {failures[0]}"
    first = failures[0] if failures else "no inputs given"
    return f"no input could be visualised: {first}" + (f" (and {len(failures) - 1} more)" if failures else "")


def run_visualize(cfg, model: nn.Module | None = None, weights: str | None = None) -> list[dict[str, Any]]:
    """The visualisation stage: every input of ``VISUALIZE.INPUT`` (up to ``VISUALIZE.MAX_INPUTS``).

    Args:
        cfg: the config.
        model: the model to visualise (default ``build_vis_model(cfg)``).
        weights: what ``model`` holds, for the figure titles (default: ``describe_weights(cfg)`` when the
            model is built here, else nothing).

    Unreadable inputs are logged and skipped; if none can be visualised an ``InputError`` (a RuntimeError)
    says why (a single unreadable input is not logged as well). Returns the per-input summaries (also
    written as json next to the images).
    """
    opts, spec = _vis_options(cfg), input_spec(cfg)
    source = cfg.VISUALIZE.INPUT or _default_source(cfg)
    files = collect_inputs(source, cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_LABEL_SEPARATOR, cfg.DATA.PATH_PREFIX)
    files = files[:cfg.VISUALIZE.MAX_INPUTS]
    weights = weights if weights is not None else describe_weights(cfg, short=True) if model is None else ""
    model = model if model is not None else build_vis_model(cfg)
    names_file = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.CLASS_NAMES_FILE) if cfg.DATA.CLASS_NAMES_FILE else ""
    names = class_names(names_file, cfg.MODEL.NUM_CLASSES)
    out_dir = os.path.join(cfg.OUTPUT_DIR, "vis")
    results, failures = [], []
    for i, path in enumerate(files):
        loaded = _try_load(path, spec, failures, log=len(files) > 1)
        if loaded is None:
            continue
        stem = os.path.join(out_dir, _stem(path, i))
        results.append(visualize_input(model, loaded[0], spec, names, stem, opts, path, weights, loaded[1]))
        logger.info("visualised %s -> %s", path, results[-1]["files"])
    if not results:
        raise InputError(_no_results_message(failures))
    save_json(results, os.path.join(out_dir, "summary.json"))
    return results
