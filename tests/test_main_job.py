"""tools/main_job.py data step: its own set made with another recipe is replaced; a named or foreign set kept."""

from __future__ import annotations

import json

from iared_video.experiments import main_job
from iared_video.synthetic import generate_image_dataset


def _classes(root) -> list[str]:
    return sorted(p.name for p in (root / "train").iterdir())


def test_stale_generated_set_is_regenerated_without_leftover_classes(tmp_path, monkeypatch) -> None:
    data = tmp_path / "images"
    generate_image_dataset(str(data), num_images=12, num_classes=6, min_short_side=32, max_short_side=48)
    recipe = dict(num_images=10, num_classes=5, min_short_side=32, max_short_side=48)
    monkeypatch.setitem(main_job.SYNTHETIC_KWARGS, "image", recipe)
    assert not main_job._meta_matches(str(data), True, 0, recipe)
    main_job.ensure_synthetic(str(data), image=True)
    meta = json.loads((data / "meta.json").read_text())
    assert meta["num_classes"] == 5 and meta["num_images"] == 10
    assert _classes(data) == sorted(meta["classes"])  # the sixth class folder is gone
    assert main_job._meta_matches(str(data), True, 0, recipe)
    stamp = (data / "meta.json").stat().st_mtime_ns
    main_job.ensure_synthetic(str(data), image=True)  # same recipe: kept as it is
    assert (data / "meta.json").stat().st_mtime_ns == stamp


def test_named_set_of_another_recipe_is_used_as_it_is(tmp_path, monkeypatch) -> None:
    """``--data_dir`` (replace_stale=False): a set this generator made with other knobs is not deleted."""
    data = tmp_path / "images"
    generate_image_dataset(str(data), num_images=12, num_classes=6, min_short_side=32, max_short_side=48)
    recipe = dict(num_images=10, num_classes=5, min_short_side=32, max_short_side=48)
    monkeypatch.setitem(main_job.SYNTHETIC_KWARGS, "image", recipe)
    stamp = (data / "meta.json").stat().st_mtime_ns
    main_job.ensure_synthetic(str(data), image=True, replace_stale=False)
    assert len(_classes(data)) == 6 and (data / "meta.json").stat().st_mtime_ns == stamp
    assert not main_job._meta_matches(str(data), True, 0, recipe)


def test_older_generator_version_counts_as_another_recipe(tmp_path) -> None:
    data = tmp_path / "images"
    recipe = dict(num_images=10, num_classes=5, min_short_side=32, max_short_side=48)
    generate_image_dataset(str(data), **recipe)
    assert main_job._meta_matches(str(data), True, 0, recipe)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "version": "1.0.0"}))
    assert not main_job._meta_matches(str(data), True, 0, recipe)


def test_foreign_set_is_used_as_it_is(tmp_path, monkeypatch) -> None:
    data = tmp_path / "mine"
    (data / "train" / "cat").mkdir(parents=True)
    (data / "meta.json").write_text(json.dumps({"generator": "my_tool", "seed": 7}))
    monkeypatch.setitem(main_job.SYNTHETIC_KWARGS, "image", dict(num_images=10, num_classes=5))
    main_job.ensure_synthetic(str(data), image=True)
    assert _classes(data) == ["cat"] and json.loads((data / "meta.json").read_text())["generator"] == "my_tool"


def test_wilson_interval_matches_hand_values() -> None:
    """0 of 10: [0, z^2 / (n + z^2)]; 50 of 100: 0.5 +- z sqrt(1/400 + z^2/40000) / (1 + z^2/100)."""
    low, high = main_job.wilson_interval(0.0, 10)
    assert low == 0.0 and abs(high - 100 * 3.841459 / 13.841459) < 1e-3
    low, high = main_job.wilson_interval(50.0, 100)
    half = 1.959964 * (1 / 400 + 1.959964 ** 2 / 40000) ** 0.5 / (1 + 1.959964 ** 2 / 100)
    assert abs(low - 100 * (0.5 - half)) < 1e-6 and abs(high - 100 * (0.5 + half)) < 1e-6


def test_matched_gmacs_drop_ratio_reproduces_the_target_cost() -> None:
    """The ratio found for a target taken from drop 0.4 gives exactly that cost (same kept count)."""
    from iared_video.methods import load_config

    opts = ["MODEL.EMBED_DIM", "48", "MODEL.DEPTH", "2", "MODEL.NUM_HEADS", "3", "DATA.NUM_FRAMES", "2",
            "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64", "METHOD.NAME", "drop_random",
            "IARED.NUM_GROUPS", "1"]
    cfg = load_config(None, opts)
    target = main_job.fixed_ratio_gmacs(cfg, 0.4)
    ratio = main_job.matched_gmacs_drop_ratio(cfg, target)
    assert main_job.fixed_ratio_gmacs(cfg, ratio) == target
    assert main_job.fixed_ratio_gmacs(cfg, 0.0) > target > main_job.fixed_ratio_gmacs(cfg, 0.95)


def test_video_set_recipe_names_its_generator_version(tmp_path) -> None:
    """A default (1.2.1) video set records the still-camera knobs only, as 1.2.1 did before 2.0.0 existed, and
    matches its recipe; asked for 2.0.0, the same recipe is another one, and a 2.0.0 set records every knob."""
    from dataclasses import fields

    from iared_video.synthetic import VideoKnobs, generate_video_dataset
    from iared_video.synthetic.knobs import CAMERA_KNOBS_OFF

    recipe = dict(num_videos=6, num_classes=2, min_frames=3, max_frames=4, min_short_side=32, max_short_side=34)
    still, moving = tmp_path / "still", tmp_path / "moving"
    generate_video_dataset(str(still), **recipe)
    meta = json.loads((still / "meta.json").read_text())
    assert meta["version"] == "1.2.1"
    assert set(meta["knobs"]) == {f.name for f in fields(VideoKnobs)} - set(CAMERA_KNOBS_OFF)
    assert main_job._meta_matches(str(still), False, 0, recipe)
    assert not main_job._meta_matches(str(still), False, 0, {**recipe, "version": "2.0.0"})
    generate_video_dataset(str(moving), version="2.0.0", **recipe)
    meta = json.loads((moving / "meta.json").read_text())
    assert meta["version"] == "2.0.0" and meta["knobs"]["camera_pan"] == 0.15
    assert main_job._meta_matches(str(moving), False, 0, {**recipe, "version": "2.0.0"})
    assert not main_job._meta_matches(str(moving), False, 0, recipe)


def test_main_job_runs_every_method_at_the_featured_gmacs(tmp_path, monkeypatch) -> None:
    """A tiny video main job: every baseline and peer has a row and a knob setting; each costs the featured row's
    GMACs or less, or sits at its knob's cheapest end; ToMe off the shelf has ToMe's cost; the ideal speed-up is
    dense's GMACs over the row's; heat maps are scored exactly for the methods whose scores are a map."""
    from iared_video.methods import get_method
    from iared_video.synthetic import generate_video_dataset

    data = tmp_path / "data"
    generate_video_dataset(str(data), num_videos=16, num_classes=2, min_frames=8, max_frames=9, min_short_side=48,
                           max_short_side=50)
    monkeypatch.setattr(main_job, "ensure_synthetic", lambda *args, **kwargs: None)
    monkeypatch.setattr(main_job, "BATCH1_VIEWS", 2)
    opts = ["MODEL.PRETRAINED", "", "MODEL.NUM_CLASSES", "2", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32",
            "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "SOLVER.MAX_EPOCH", "1",
            "IARED.INTERPRETER_EPOCHS", "1", "IARED.BACKBONE_EPOCHS", "1", "TEST.NUM_SPATIAL_CROPS", "1",
            "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "TRAIN.EVAL_PERIOD", "0",
            "DYNAMICVIT.BACKBONE_HOLD_EPOCHS", "0.0"]
    rows = {r.method: r for r in main_job.run_main_job(str(data), str(tmp_path / "out"), False, opts)}
    matched = [*main_job.BASELINES["video"], *main_job.PEERS, *main_job.OFF_SHELF.values()]
    assert list(rows) == ["dense", main_job.TARGET_LABELS["video"], main_job.PAPER_LABEL, *matched]
    saved = json.loads((tmp_path / "out" / "main_job_results.json").read_text())
    assert sorted(saved["settings"]) == sorted(matched)
    target = rows[main_job.TARGET_LABELS["video"]].gmacs_per_view
    dense = rows["dense"].gmacs_per_view
    for label in matched:
        row = rows[label]
        key, value = saved["settings"][label].split("=")
        method = get_method(label.replace("-off-shelf", ""))
        assert method.knob is not None and key == method.knob.key
        cheapest = method.knob.high if not method.knob.cost_rises else method.knob.low
        assert row.gmacs_per_view <= target * 1.0001 or float(value) == cheapest, (label, row.gmacs_per_view)
        assert abs(row.ideal_speedup - dense / row.gmacs_per_view) < 1e-9
    assert rows["tome-off-shelf"].gmacs_per_view == rows["tome"].gmacs_per_view
    from iared_video.engine.checkpoint import newest_checkpoint

    shelf = json.loads((tmp_path / "out" / "tome-off-shelf" / "test_results.json").read_text())
    assert shelf["checkpoint"] == newest_checkpoint(str(tmp_path / "out" / "dense"))  # tested on dense's weights
    assert not (tmp_path / "out" / "tome-off-shelf" / "checkpoints").exists()  # and never trained
    methods = {"dense": "dense", main_job.TARGET_LABELS["video"]: "iared", main_job.PAPER_LABEL: "iared",
               **{label: label.replace("-off-shelf", "") for label in matched}}
    for label, row in rows.items():
        assert (row.heatmap_map is not None) == get_method(methods[label]).has_scores, label
        assert row.speedup_b1 is not None and row.speedup_b1 > 0
