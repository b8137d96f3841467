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

Modules: ``inputs`` (files and their test views, via ``iared_video.datasets.views``), ``render`` (one
input's figure, grids, animation and json), ``model`` (the model shown and its weights), ``stage``
(``run_visualize``), ``figure``, ``overlay`` and ``writers`` (drawing and files).
"""

from iared_video.visualization.inputs import (
                                              InputSpec,
                                              class_names,
                                              collect_inputs,
                                              input_spec,
                                              load_input,
                                              looks_like_image,
)
from iared_video.visualization.model import RANDOM_WEIGHTS, build_vis_model, describe_weights
from iared_video.visualization.render import VisOptions, visualize_input
from iared_video.visualization.stage import run_visualize

__all__ = ["InputSpec", "VisOptions", "RANDOM_WEIGHTS", "input_spec", "collect_inputs", "looks_like_image",
           "load_input", "visualize_input", "class_names", "describe_weights", "build_vis_model", "run_visualize"]
