"""The README's main job: dense (pre-trained) -> IA-RED^2 (from the dense weights; the featured configuration and
the paper's) -> the paper's fixed-ratio baselines and the peers (ToMe, EViT, DynamicViT; ToMe also off the shelf),
each set to the featured row's GMACs by its own knob, trained and tested; then all timed interleaved in one
process (the table's batch and batch 1) and their maps scored against the masks, one table.

The recipe's pieces (``run_stage``, ``run_recipe``, ``gmacs_of``, ``knob_for_gmacs``) are what
``experiments.head_to_head`` runs every method through. Stages hand their :class:`TestResults` over in
memory; the JSON files are written for users.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from fvcore.common.config import CfgNode
from torch import nn

from iared_video.config import device_of
from iared_video.engine.checkpoint import newest_checkpoint
from iared_video.engine.launch import launch
from iared_video.engine.logging import get_logger, setup_logging
from iared_video.methods import get_method
from iared_video.utils.results import MainJobResults, MainJobRow, TestResults, format_table, load_json, save_json

__all__ = ["MAIN_JOB_CONFIGS", "SYNTHETIC_CONFIG_DIR", "BASELINES", "TARGET_LABELS", "PAPER_LABEL", "ensure_synthetic",
           "run_stage", "Recipe", "CONFIG_PREFIX", "synthetic_config", "PEERS", "OFF_SHELF", "TEST_ONLY",
           "heatmap_rows", "load_trained",
           "run_recipe", "gmacs_of", "knob_for_gmacs", "fixed_ratio_gmacs", "matched_gmacs_drop_ratio",
           "matched_drop_ratio", "measured_keep_ratio", "read_test_results", "wilson_interval", "table_row",
           "measured_throughput", "run_main_job"]

logger = get_logger(__name__)

#: The repository's ``configs/Synthetic`` folder (configs are found from any working directory).
SYNTHETIC_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "Synthetic"
#: The synthetic configs' prefix per branch: ``configs/Synthetic/<prefix>_tiny_<name>.yaml``.
CONFIG_PREFIX = {"video": "tsf", "image": "deit"}


def synthetic_config(kind: str, name: str) -> str:
    """Path of the branch's synthetic config ``name`` (``dense``, ``iared``, a method's ``synthetic_config``)."""
    return str(SYNTHETIC_CONFIG_DIR / f"{CONFIG_PREFIX[kind]}_tiny_{name}.yaml")


MAIN_JOB_CONFIGS = {kind: tuple(synthetic_config(kind, name) for name in ("dense", "iared", "random", "iared_paper"))
                    for kind in CONFIG_PREFIX}

#: Table labels of the two IA-RED^2 rows. The featured row (``{tsf,deit}_tiny_iared.yaml``, whose GMACs every
#: baseline matches) departs from the paper and is named for what it changes (docs/METHODS.md): on video the
#: interpreter scores each patch's change from the frame before through a hidden layer, keeps each video's
#: round(sum I) best tokens and rewards the label's probability ("iared-motion"); on images it drops at group 2
#: only, at threshold 0.3 and tau 1.0 ("iared-g2"). ``iared-paper`` (``*_tiny_iared_paper.yaml``) is the
#: paper's method with its settings, epochs and learning rates scaled to the set.
TARGET_LABELS = {"video": "iared-motion", "image": "iared-g2"}
PAPER_LABEL = "iared-paper"

#: The paper's fixed-ratio baselines run by the main job (by table label, also their output folder), each at
#: IA-RED^2's GMACs (the baseline config with ``METHOD.NAME`` set to the method's name); temporal difference needs
#: frames.
BASELINES = {"video": ("random", "attention", "temporal_diff"), "image": ("random", "attention")}
#: The peers, each set by its own cost knob to the featured row's GMACs (or its cheapest setting, if that costs
#: more) and fine-tuned from the dense weights. ToMe and EViT select by a rule, so they get the baselines' budget
#: (the baseline config, nothing frozen: video 2 epochs at 2e-4, images 8 at 3e-4); DynamicViT learns its
#: predictors, so its own config gives it IA-RED^2's epochs (video 3 + 2, images 12 + 8).
PEERS = ("tome", "evit", "dynamicvit")
#: Training-free peers also tested off the shelf on the dense weights, at the same setting (label: output folder).
OFF_SHELF = {"tome": "tome-off-shelf"}
#: Options that test a given checkpoint and run nothing else (no training, no other stage, no initial weights).
TEST_ONLY = ["TRAIN.ENABLE", "False", "TEST.ENABLE", "True", "VISUALIZE.ENABLE", "False", "BENCHMARK.ENABLE", "False",
             "MODEL.PRETRAINED", ""]
#: Val views whose heat maps are scored against the actor/object masks, per method with a map.
HEATMAP_SAMPLES = 96
#: Test views timed at batch 1 (the table's batch times the whole test split).
BATCH1_VIEWS = 32

#: Generator arguments of the main job's synthetic sets (see datasets/SYNTHETIC.md): the video defaults with
#: 2000 videos so that every stage's training fits the two-core time budget; 3000 images of the easy preset in
#: 5 classes (one shape in 5 fill textures: the tiny ViT from scratch cannot tell the shapes apart).
SYNTHETIC_KWARGS: dict[str, dict[str, Any]] = {
    "video": dict(num_videos=2000),
    "image": dict(num_images=3000, num_classes=5, difficulty="easy"),
}

#: Options that turn the dense stage into the from-scratch control: no pre-trained weights, and the embedding
#: initialisation that lets a ViT learn these sets from scratch (docs/experiment_log.md).
FROM_SCRATCH_OPTS = {
    "video": ["MODEL.PRETRAINED", "", "MODEL.POS_EMBED_INIT_STD", "1.0", "MODEL.TIME_EMBED_INIT_STD", "1.0"],
    "image": ["MODEL.PRETRAINED", "", "MODEL.POS_EMBED_INIT_STD", "1.0"],
}


def _meta_matches(data_dir: str, image: bool, seed: int, kwargs: dict) -> bool:
    """Whether ``data_dir/meta.json`` was written by the generator with ``seed`` and ``kwargs``."""
    from iared_video.synthetic import GENERATOR_NAME, GENERATOR_VERSION, ImageKnobs, VideoKnobs, make_knobs
    from iared_video.synthetic.knobs import recorded_knobs

    try:
        with open(os.path.join(data_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return True  # not a generated set (or no meta): use it as it is
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR_NAME:
        return True  # someone else's set: use it as it is, never regenerate (that deletes it)
    kwargs = dict(kwargs)
    count_key = "num_images" if image else "num_videos"
    count, classes = kwargs.pop(count_key, None), kwargs.pop("num_classes", None)
    difficulty = kwargs.pop("difficulty", "medium")
    version = GENERATOR_VERSION if image else kwargs.pop("version", GENERATOR_VERSION)
    knobs = make_knobs(ImageKnobs if image else VideoKnobs, difficulty, version, **kwargs)
    want = json.loads(json.dumps(asdict(knobs) if image else recorded_knobs(knobs, version)))
    return (meta.get("version") == version and meta.get("seed") == seed
            and meta.get("difficulty") == difficulty and meta.get("knobs") == want
            and (count is None or meta.get(count_key) == count)
            and (classes is None or meta.get("num_classes") == classes))


def ensure_synthetic(data_dir: str, image: bool, seed: int = 0, replace_stale: bool = True) -> None:
    """Generate the main job's synthetic set in ``data_dir`` unless it is there already (same recipe).

    A set of this generator made with another recipe is deleted and generated again only with ``replace_stale``
    (the main job's own folder); a set the user named (``--data_dir``) is used as it is, whoever made it.
    """
    kind = "image" if image else "video"
    kwargs = SYNTHETIC_KWARGS[kind]
    marker = os.path.join(data_dir, "train" if image else "train.csv")
    if os.path.exists(marker):
        if _meta_matches(data_dir, image, seed, kwargs):
            logger.info("using the synthetic %s set in %s", kind, data_dir)
            return
        if not replace_stale:
            logger.warning("the %s set in %s was made with another recipe than the main job's (%s): using it as it "
                           "is", kind, data_dir, kwargs)
            return
        logger.warning("the synthetic %s set in %s was made with another recipe: deleting and regenerating it",
                       kind, data_dir)
        shutil.rmtree(data_dir)  # only generated sets get here (see _meta_matches); stale class folders would stay
    from iared_video.synthetic import generate_image_dataset, generate_video_dataset

    logger.info("generating the synthetic %s set in %s (%s)", kind, data_dir, kwargs)
    (generate_image_dataset if image else generate_video_dataset)(data_dir, seed=seed, num_workers=2, **kwargs)


def measured_keep_ratio(cfg: CfgNode) -> float:
    """Mean keep ratio of ``cfg``'s newest checkpoint on the val split (all groups greedy)."""
    from iared_video.datasets import construct_loader
    from iared_video.engine.tester import load_test_weights
    from iared_video.engine.trainer import eval_epoch
    from iared_video.methods import build_model
    from iared_video.models import PolicyModel

    device = device_of(cfg)
    model = cast(PolicyModel, build_model(cfg).to(device))  # a token-dropping method's model
    load_test_weights(model, "", cfg.OUTPUT_DIR)
    stats = eval_epoch(model, construct_loader(cfg, "val"), ["greedy"] * model.num_groups, device)
    assert stats.keep_ratio is not None  # a policy model reports it
    return float(stats.keep_ratio)


def matched_drop_ratio(keep_ratio: float) -> float:
    """Drop ratio of a fixed-ratio baseline matched to IA-RED^2's keep ratio (clamped to [0, 0.95])."""
    return min(max(1.0 - keep_ratio, 0.0), 0.95)


def gmacs_of(cfg: CfgNode) -> float:
    """GMACs per view of ``cfg``'s model on a generated input (the methods' token counts do not depend on it)."""
    from iared_video.engine.benchmark import make_input
    from iared_video.methods import build_model, model_gmacs_per_sample

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.PRETRAINED = ""
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(make_input(cfg, 1, torch.Generator().manual_seed(0)), return_policy=True)
    return float(model_gmacs_per_sample(model, out)[0])


def knob_for_gmacs(cfg: CfgNode, label: str, target: float, steps: int = 12) -> list[str]:
    """``[KEY, VALUE]`` of the method's knob at which its model costs about ``target`` GMACs (not more).

    Bisection: cost is monotone in the knob (``Knob.cost_rises``); integer knobs stop at adjacent integers,
    real ones after ``steps`` halvings (a fixed-ratio drop: to one token).
    """
    knob = get_method(label).knob
    assert knob is not None, f"{label} has no cost knob"

    def cost(value: float) -> float:
        node = cfg.clone()
        node.defrost()
        node.merge_from_list([*knob.with_opts, knob.key, int(value) if knob.integer else float(value)])
        return gmacs_of(node)

    cheap, dear = (knob.low, knob.high) if knob.cost_rises else (knob.high, knob.low)
    dear_fits = cost(dear) <= target  # each cost() builds and runs a model: evaluated once
    if dear_fits or cost(cheap) > target:
        best = dear if dear_fits else cheap
        return [knob.key, repr(int(best) if knob.integer else float(best))]
    for _ in range(steps):
        mid = (cheap + dear) / 2
        mid = round(mid) if knob.integer else mid
        if mid in (cheap, dear):
            break
        cheap, dear = (mid, dear) if cost(mid) <= target else (cheap, mid)
    return [knob.key, repr(int(cheap) if knob.integer else float(cheap))]


def fixed_ratio_gmacs(cfg: CfgNode, drop_ratio: float) -> float:
    """GMACs per view of ``cfg``'s fixed-ratio model at ``drop_ratio``."""
    node = cfg.clone()
    node.defrost()
    node.DROP.RATIO = float(drop_ratio)
    return gmacs_of(node)


def matched_gmacs_drop_ratio(cfg: CfgNode, target_gmacs: float, steps: int = 12) -> float:
    """Drop ratio in [0, 0.95] at which ``cfg``'s fixed-ratio baseline costs ``target_gmacs`` (not more)."""
    return float(knob_for_gmacs(cfg, cfg.METHOD.NAME, target_gmacs, steps)[1])


def wilson_interval(errors: float, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval (percent) of an error rate given in percent over ``total`` trials."""
    if total <= 0:
        return float("nan"), float("nan")
    p = errors / 100.0
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return 100.0 * max(centre - half, 0.0), 100.0 * min(centre + half, 1.0)


def read_test_results(cfg: CfgNode) -> TestResults:
    """``cfg``'s ``test_results.json``: for a stage run in other processes, or by an earlier invocation."""
    return TestResults.from_dict(load_json(os.path.join(cfg.OUTPUT_DIR, "test_results.json")))


def run_stage(cfg: CfgNode, init_method: str) -> TestResults:
    """Train and test ``cfg`` (``tools/run_net.py``'s stages); its test results, handed back in memory.

    Only a job spawned into several processes leaves them in ``test_results.json`` alone.
    """
    results = launch(cfg, init_method)
    return results if results is not None else read_test_results(cfg)


@dataclass
class Recipe:
    """Dense -> the target method from the dense weights -> every other method set against the target.

    Attributes:
        dense: the dense stage's config.
        target: the target's config, given the dense checkpoint (None: no target; the others as configured).
        others: label -> config of that method (None: left out), given the dense checkpoint and the target's
            ``(config, test results)`` (None without a target).
        run: trains and tests one config; returns its test results (None: not run and none on disk).
        dense_checkpoint: the dense stage's output folder -> the checkpoint the others start from.
    """

    dense: CfgNode
    target: Callable[[str], CfgNode] | None
    others: dict[str, Callable[[str, tuple[CfgNode, TestResults | None] | None], CfgNode | None]]
    run: Callable[[CfgNode], TestResults | None]
    target_label: str = "target"
    dense_checkpoint: Callable[[str], str] = newest_checkpoint
    done: dict[str, tuple[CfgNode, TestResults | None]] = field(default_factory=dict)


def run_recipe(recipe: Recipe) -> dict[str, tuple[CfgNode, TestResults | None]]:
    """Run the recipe in order; returns label -> (config, test results), dense first, then the target."""
    recipe.done["dense"] = (recipe.dense, recipe.run(recipe.dense))
    dense_ckpt = recipe.dense_checkpoint(recipe.dense.OUTPUT_DIR) if recipe.target or recipe.others else ""
    target = None
    if recipe.target is not None:
        cfg = recipe.target(dense_ckpt)
        target = recipe.done[recipe.target_label] = (cfg, recipe.run(cfg))
    for label, make in recipe.others.items():
        cfg = make(dense_ckpt, target)
        if cfg is not None:
            recipe.done[label] = (cfg, recipe.run(cfg))
    return recipe.done


def load_trained(cfg: CfgNode) -> nn.Module:
    """``cfg``'s model with its tested weights (``TEST.CHECKPOINT_FILE_PATH``, else its newest checkpoint), in eval."""
    from iared_video.engine.tester import load_test_weights
    from iared_video.methods import build_model

    model = build_model(cfg)
    load_test_weights(model, cfg.TEST.CHECKPOINT_FILE_PATH, cfg.OUTPUT_DIR)
    return model.eval()


def measured_throughput(models: Sequence[nn.Module], cfg: CfgNode, iters: int = 3, batch1_views: int | None = None
                        ) -> list[dict[str, float]]:
    """Throughput of each trained model (the first is the reference) on ``cfg``'s test split at the table's batch
    and at batch 1, timed interleaved in one process.

    The test pass's own clips/s runs beside the loader's decoding workers and is not comparable across runs.
    Here the test views are decoded once into memory, then for each batch the models run in rotating order
    (``iters`` timed runs after one warm-up); a model's time is the sum over batches of its median. The table's
    batch (``TEST.BATCH_SIZE``) covers the whole test split, batch 1 its first ``batch1_views`` views (default
    ``BATCH1_VIEWS``).
    """
    from iared_video.engine.benchmark import Variant, time_interleaved
    from iared_video.experiments.tradeoff import eval_batches

    variants = [Variant(str(i), model, "") for i, model in enumerate(models)]
    split = cfg.TEST.SPLIT
    out: list[dict[str, float]] = [{} for _ in models]
    for suffix, batches in (("", eval_batches(cfg, split, num_batches=0, batch=cfg.TEST.BATCH_SIZE)),
                            ("_b1", eval_batches(cfg, split, batch1_views or BATCH1_VIEWS, batch=1))):
        seconds = [0.0] * len(models)
        for inputs, _ in batches:
            times = time_interleaved(variants, inputs, "fp32", warmup=1, iters=iters)
            for i, v in enumerate(variants):
                seconds[i] += statistics.median(times[v.name])
        views = sum(len(inputs) for inputs, _ in batches)
        for i, t in enumerate(seconds):
            out[i].update({f"throughput{suffix}": views / t, f"speedup{suffix}": seconds[0] / t})
    return out


def _interval(error: float, count: int | None) -> str:
    low, high = wilson_interval(error, int(count or 0))
    return f"{low:.1f}-{high:.1f}"


def table_row(method: str, results: TestResults, speed: dict[str, float], video: bool, dense_gmacs: float | None,
              heatmap: dict[str, float] | None = None) -> MainJobRow:
    """One method's row: keep ratio, GMACs and their share of dense's, error(s) with 95% Wilson intervals,
    measured speed-up at the table's batch and at batch 1 beside the FLOPs-ideal one, heat-map mIoU and mAP."""
    gmacs = results.gmacs_per_view
    ideal = dense_gmacs / gmacs if gmacs and dense_gmacs else None
    row = MainJobRow(method, results.keep_ratio, gmacs, speedup=speed["speedup"], speedup_b1=speed["speedup_b1"],
                     ideal_speedup=ideal, gmacs_ratio=None if ideal is None else 1.0 / ideal)
    if heatmap:
        row.heatmap_miou, row.heatmap_map = heatmap["miou"], heatmap["map"]
    if video:
        assert results.clip1_err is not None and results.video1_err is not None  # set for every video test
        row.clip1_err, row.video1_err = results.clip1_err, results.video1_err
        row.clip1_ci95 = _interval(results.clip1_err, results.num_clip1_scored)
        row.video1_ci95 = _interval(results.video1_err, results.num_videos_scored)
        row.clips_per_s = speed["throughput"]
    else:
        assert results.top1_err is not None  # set for every image test
        row.top1_err, row.top1_ci95 = results.top1_err, _interval(results.top1_err, results.num_images)
        row.images_per_s = speed["throughput"]
    return row


def heatmap_rows(trained: dict[str, tuple[nn.Module, CfgNode]], max_samples: int | None = None
                 ) -> dict[str, dict[str, float]]:
    """Label -> segmentation scores of the model's own map on the first ``max_samples`` (``HEATMAP_SAMPLES``) val
    views, for every method whose scores form a map (``Method.has_scores``; ``random``'s is noise, a chance level).

    Args:
        trained: label -> (trained model, its config).
    """
    from iared_video.experiments.heatmaps import policy_map_scores
    from iared_video.models import PolicyModel

    return {label: policy_map_scores(cast(PolicyModel, model), cfg, max_samples or HEATMAP_SAMPLES)
            for label, (model, cfg) in trained.items() if get_method(cfg.METHOD.NAME).has_scores}


def _main_job_recipe(kind: str, common: Sequence[str], output_dir: str, from_scratch: bool, init_method: str,
                     settings: dict[str, str]) -> Recipe:
    """Dense, the featured IA-RED^2 from it, the paper's IA-RED^2, each baseline and peer set to the featured
    row's GMACs by its knob (the settings found go into ``settings``: label -> ``KEY=VALUE``), ToMe off the shelf."""
    from iared_video.methods import load_config

    dense_path, iared_path, baseline_path, paper_path = MAIN_JOB_CONFIGS[kind]

    def stage(path: str, name: str, extra: Sequence[str]) -> CfgNode:
        return load_config(path, [*common, *extra, "OUTPUT_DIR", os.path.join(output_dir, name)])

    def matched(label: str, folder: str, off_shelf: bool = False) -> Callable[[str, Any], CfgNode]:
        method = get_method(label)
        assert method.knob is not None  # every baseline and peer has a cost knob
        # A method that trains like the dense model (ToMe, EViT) fine-tunes on the baseline config instead.
        own = method.synthetic_config
        path = baseline_path if own == "dense" else synthetic_config(kind, own)
        opts = [*method.config_opts(), *method.knob.with_opts]

        def make(dense_ckpt: str, target: tuple[CfgNode, TestResults | None] | None) -> CfgNode:
            tested = target[1] if target is not None else None
            assert tested is not None and tested.gmacs_per_view is not None  # the others follow a tested target
            gmacs = float(tested.gmacs_per_view)
            key, value = knob_for_gmacs(load_config(path, [*common, *opts]), label, gmacs)
            settings[folder] = f"{key}={value}"
            logger.info("%s at IA-RED^2's %.4f GMACs: %s %s", folder, gmacs, key, value)
            start = [*TEST_ONLY, "TEST.CHECKPOINT_FILE_PATH", dense_ckpt] if off_shelf else \
                ["TRAIN.CHECKPOINT_FILE_PATH", dense_ckpt]
            return stage(path, folder, [*start, *opts, key, value])
        return make

    dense = stage(dense_path, "dense", FROM_SCRATCH_OPTS[kind] if from_scratch else [])
    if from_scratch:
        return Recipe(dense, None, {}, lambda cfg: run_stage(cfg, init_method), TARGET_LABELS[kind])
    target = lambda ckpt: stage(iared_path, "iared", ["TRAIN.CHECKPOINT_FILE_PATH", ckpt])  # noqa: E731
    others: dict[str, Callable[[str, Any], CfgNode | None]] = {
        PAPER_LABEL: lambda ckpt, _: stage(paper_path, "iared_paper", ["TRAIN.CHECKPOINT_FILE_PATH", ckpt])}
    others.update({label: matched(label, label) for label in (*BASELINES[kind], *PEERS)})
    others.update({shelf: matched(label, shelf, off_shelf=True) for label, shelf in OFF_SHELF.items()})
    return Recipe(dense, target, others, lambda cfg: run_stage(cfg, init_method), TARGET_LABELS[kind])


def run_main_job(data_dir: str, output_dir: str, image: bool = False, opts: Sequence[str] = (),
                 init_method: str = "tcp://localhost:9999", from_scratch: bool = False,
                 replace_stale_data: bool = True) -> list[MainJobRow]:
    """Dense (from the pre-trained weights) -> IA-RED^2 (from the dense weights) -> the paper's fixed-ratio
    baselines and the peers at IA-RED^2's GMACs; test all, time all interleaved in one process, score every map
    against the masks, one table.

    Args:
        from_scratch: the control of "pre-training helps": the dense stage alone, without pre-trained weights.
        replace_stale_data: regenerate ``data_dir`` if this generator made it with another recipe (the job's own
            folder); False uses a named set as it is (:func:`ensure_synthetic`).

    Returns the table rows; also writes ``output_dir/main_job_results.json``.
    """
    kind = "image" if image else "video"
    setup_logging(output_dir)
    ensure_synthetic(data_dir, image, replace_stale=replace_stale_data)
    settings: dict[str, str] = {}
    common = ["DATA.PATH_TO_DATA_DIR", data_dir, *opts]
    runs = run_recipe(_main_job_recipe(kind, common, output_dir, from_scratch, init_method, settings))
    trained = {label: (load_trained(cfg), cfg) for label, (cfg, _) in runs.items()}  # dense first
    speeds = measured_throughput([model for model, _ in trained.values()], runs["dense"][0])
    maps = heatmap_rows(trained)
    dense_gmacs = runs["dense"][1].gmacs_per_view if runs["dense"][1] is not None else None
    rows = []
    for (method, (_, results)), speed in zip(runs.items(), speeds):
        assert results is not None  # run_stage always hands back test results
        rows.append(table_row(method, results, speed, not image, dense_gmacs, maps.get(method)))
    setup_logging(output_dir)
    save_json(MainJobResults(kind, from_scratch, settings, rows), os.path.join(output_dir, "main_job_results.json"))
    logger.info("main job (%s%s):\n%s", kind, ", dense from scratch" if from_scratch else "", format_table(rows))
    return rows
