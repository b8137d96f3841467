"""Formula-driven pre-training of the embedded backbone, exported as a small weights file with its recipe.

The recipe: generate a FractalDB-style set (``iared_video.synthetic.formula``), train the image branch on it with
``configs/Synthetic/vit_micro_formula_pretrain.yaml`` through the ordinary trainer, then export the newest
checkpoint's model weights (no optimiser state) to ``weights/<name>.pyth`` with a JSON sidecar that records the
command, config, seed, generator version, accuracy and the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from iared_video.engine.logging import get_logger
from iared_video.utils.results import save_json

__all__ = ["PretrainRecipe", "DEFAULT_RECIPE", "export_weights", "sha256_of", "run_pretraining", "read_sidecar"]

logger = get_logger(__name__)


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the exported weights.

    Attributes:
        config: the pre-training yaml.
        weights: the exported weights file; its sidecar is the same path with ``.json``.
        num_classes, per_class, val_per_class, size, seed: the formula set (``generate_formula_dataset``).
        opts: extra ``KEY VALUE`` config options.
    """

    config: str = "configs/Synthetic/vit_micro_formula_pretrain.yaml"
    weights: str = "weights/vit_micro_formula.pyth"
    num_classes: int = 100
    per_class: int = 150
    val_per_class: int = 10
    size: int = 96
    seed: int = 0
    opts: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_RECIPE = PretrainRecipe()


def sha256_of(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(weights: str) -> str:
    """``weights/x.pyth`` -> ``weights/x.json``."""
    return os.path.splitext(weights)[0] + ".json"


def read_sidecar(weights: str) -> dict:
    """The recipe record written beside ``weights``."""
    with open(sidecar_path(weights)) as f:
        return json.load(f)


def export_weights(checkpoint: str, weights: str, record: dict) -> dict:
    """Copy a training checkpoint's model weights (and config) to ``weights``; write the sidecar.

    Returns:
        the sidecar record, with ``sha256`` and ``num_parameters`` added.
    """
    from iared_video.engine.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(checkpoint)
    state = {k: v for k, v in payload["model_state"].items() if k.startswith("backbone.")}
    save_checkpoint(weights, {"model_state": state, "cfg": payload.get("cfg", "")})
    record = {**record, "source_checkpoint": os.path.basename(checkpoint), "sha256": sha256_of(weights),
              "num_parameters": sum(v.numel() for v in state.values())}
    save_json(record, sidecar_path(weights), sort_keys=True)
    return record


def _ensure_formula_set(recipe: PretrainRecipe, data_dir: str) -> None:
    """Generate the formula set unless ``data_dir`` holds one made with the same recipe."""
    from iared_video.synthetic.formula import GENERATOR_NAME, GENERATOR_VERSION, generate_formula_dataset

    want = {"num_classes": recipe.num_classes, "per_class": recipe.per_class, "val_per_class": recipe.val_per_class,
            "size": recipe.size, "seed": recipe.seed}
    try:
        with open(os.path.join(data_dir, "meta.json")) as f:
            meta = json.load(f)
        made = meta.get("arguments", {}) if meta.get("version") == GENERATOR_VERSION else {}
        if all(made.get(k) == v for k, v in want.items()):
            logger.info("using the formula set in %s", data_dir)
            return
        if meta.get("generator") == GENERATOR_NAME:  # ours, another recipe: stale class folders would stay
            logger.warning("the formula set in %s was made with another recipe: regenerating it", data_dir)
            shutil.rmtree(data_dir)
    except (OSError, ValueError, AttributeError):
        pass  # no set yet: generate it
    logger.info("generating the formula set in %s (%s)", data_dir, want)
    generate_formula_dataset(data_dir, num_classes=recipe.num_classes, per_class=recipe.per_class,
                             size=recipe.size, val_per_class=recipe.val_per_class, seed=recipe.seed)


def run_pretraining(recipe: PretrainRecipe = DEFAULT_RECIPE, data_dir: str = "./data/formula",
                    output_dir: str = "./output/pretrain/vit_micro_formula", command: str = "",
                    init_method: str = "tcp://localhost:9999") -> dict:
    """Generate the data, pre-train through ``run_net``'s stages, export ``recipe.weights``; return the record."""
    from iared_video.engine.checkpoint import newest_checkpoint
    from iared_video.experiments.main_job import run_stage
    from iared_video.methods import load_config
    from iared_video.synthetic.formula import GENERATOR_NAME, GENERATOR_VERSION

    _ensure_formula_set(recipe, data_dir)
    opts: Sequence[str] = ["DATA.PATH_TO_DATA_DIR", data_dir, "OUTPUT_DIR", output_dir,
                           "MODEL.NUM_CLASSES", str(recipe.num_classes), "RNG_SEED", str(recipe.seed), *recipe.opts]
    cfg = load_config(recipe.config, list(opts))
    results = run_stage(cfg, init_method)
    record = {"command": command, "recipe": asdict(recipe), "generator": GENERATOR_NAME,
              "generator_version": GENERATOR_VERSION, "torch": torch.__version__,
              "val_top1_err": results.top1_err, "val_top5_err": results.top5_err}
    record = export_weights(newest_checkpoint(output_dir), recipe.weights, record)
    logger.info("exported %s (sha256 %s)", recipe.weights, record["sha256"])
    return record
