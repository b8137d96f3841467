"""Tests for the embedded synthetic video and image data sets (fast, tiny sets)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from iared_video import synthetic as S
from iared_video.datasets.imagenet import find_classes
from iared_video.datasets.masks import load_image_mask, load_masks
from iared_video.synthetic.images import _fill_marks

# Tiny, fast geometry for generated sets.
TINY = dict(min_frames=8, max_frames=14, min_short_side=96, max_short_side=128)
# A uniform background: no clutter, distractors, moving band or noise; a still camera and a one-colour actor.
PLAIN = dict(clutter=0.0, num_distractors=(0, 0), background_motion=0.0, noise=0.0, camera_pan=0.0, camera_sway=0.0,
             camera_jitter=0.0, camera_zoom=0.0, grain=0.0, actor_texture=False)
PLAIN_IMAGE = dict(clutter=0.0, num_distractors=(0, 0), noise=0.0)


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    """Relative path -> bytes for the files under root matching a glob."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


def _decode(path: Path) -> np.ndarray:
    """All frames of a video, decoded with decord, (T, H, W, 3) uint8."""
    decord = pytest.importorskip("decord")
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _centroid(mask: np.ndarray) -> np.ndarray:
    """(x, y) centroid of a bool mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour erosion of a 2-D bool mask."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[0], out[-1], out[:, 0], out[:, -1] = False, False, False, False
    return out


@pytest.fixture(scope="module")
def video_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny generated video set shared by the read-only tests."""
    root = tmp_path_factory.mktemp("syn_video")
    meta = S.generate_video_dataset(str(root), num_videos=10, seed=7, num_classes=8, **TINY)
    return root, meta


# --------------------------------------------------------------------------- layout


def test_video_layout_and_csv_format(video_set: tuple[Path, dict]) -> None:
    root, meta = video_set
    classnames = json.loads((root / "classnames.json").read_text())
    assert classnames == {name: i for i, name in enumerate(S.VIDEO_CLASSES[:8])}
    assert json.loads((root / "meta.json").read_text()) == meta
    seen = []
    for split in S.SPLITS:
        for line in (root / f"{split}.csv").read_text().splitlines():
            assert re.fullmatch(r"videos/\d{6}\.mp4 \d+", line), line
            rel, label = line.split(" ")
            assert (root / rel).is_file() and 0 <= int(label) < 8
            seen.append((rel, int(label), split))
    expected = sorted((v["path"], v["label"], v["split"]) for v in meta["videos"])
    assert sorted(seen) == expected and len(seen) == 10
    for v in meta["videos"]:
        assert (root / "masks" / (Path(v["path"]).stem + ".npz")).is_file()
        assert v["fps"] in S.VideoKnobs().fps_choices
        assert TINY["min_frames"] <= v["frames"] <= TINY["max_frames"]
    assert meta["seed"] == 7 and meta["version"] == S.GENERATOR_VERSION
    assert meta["knobs"]["min_frames"] == 8 and "noise" in meta["knobs"]


def test_stratified_splits_and_balanced_labels() -> None:
    labels = S.balanced_labels(100, 8, seed=0)
    counts = np.bincount(labels, minlength=8)
    assert counts.max() - counts.min() <= 1
    splits = np.array(S.stratified_splits(labels, (0.7, 0.15, 0.15), seed=0))
    for c in range(8):
        per = np.bincount(splits[labels == c], minlength=3)
        assert per[0] >= 8 and per[1] >= 1 and per[2] >= 1, per
    assert abs((splits == 0).mean() - 0.7) < 0.05


def test_stratified_splits_warn_when_a_split_ends_empty(caplog) -> None:
    # 3 items per class at (0.7, 0.15, 0.15): per-class bounds round to [2, 3, 3], so no item reaches split 2.
    with caplog.at_level("WARNING", logger=S.__name__):
        splits = S.stratified_splits(S.balanced_labels(24, 8, seed=0), (0.7, 0.15, 0.15), seed=0)
    assert np.bincount(splits, minlength=3).tolist() == [16, 8, 0]
    assert "split 2 (ratio 0.15) gets no items" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger=S.__name__):
        S.stratified_splits(S.balanced_labels(48, 8, seed=0), (0.7, 0.15, 0.15), seed=0)
        S.stratified_splits(S.balanced_labels(24, 8, seed=0), (1.0, 0.0, 0.0), seed=0)  # ratio 0: empty is wanted
    assert "gets no items" not in caplog.text


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kw = dict(num_videos=8, num_classes=8, **TINY)
    dirs = {name: tmp_path / name for name in ("a", "b", "c")}
    S.generate_video_dataset(str(dirs["a"]), seed=3, **kw)
    S.generate_video_dataset(str(dirs["b"]), seed=3, num_workers=2, **kw)
    S.generate_video_dataset(str(dirs["c"]), seed=4, **kw)
    a, b, c = ({p: _files(d, p) for p in ("*.csv", "*.json", "masks/*", "videos/*")}
               for d in dirs.values())
    assert a == b  # CSV text, classnames, meta, mask bytes and encoded video bytes
    assert a["*.csv"] and len(a["masks/*"]) == 8
    assert a["masks/*"].keys() == c["masks/*"].keys()
    assert all(a["masks/*"][k] != c["masks/*"][k] for k in a["masks/*"])
    assert a["videos/*"] != c["videos/*"]


def test_any_video_is_reproducible_from_seed_and_index(video_set: tuple[Path, dict]) -> None:
    root, meta = video_set
    v = meta["videos"][4]
    frames, masks, fps = S.render_video(S.video_rng(meta["seed"], v["index"]), v["label"],
                                        **meta["knobs"])
    assert fps == v["fps"] and masks.shape == (v["frames"], v["height"], v["width"])
    np.testing.assert_array_equal(masks, load_masks(str(root / v["mask"])))


# --------------------------------------------------------------------------- decoding


def test_decoded_frames_match_meta_masks_and_render(video_set: tuple[Path, dict]) -> None:
    root, meta = video_set
    for v in meta["videos"]:
        decoded = _decode(root / v["path"])
        masks = load_masks(str(root / v["mask"]))
        assert masks.dtype == bool and masks.any(axis=(1, 2)).all()
        assert decoded.shape == (v["frames"], v["height"], v["width"], 3)
        assert masks.shape == decoded.shape[:3]
        assert v["height"] % 2 == 0 and v["width"] % 2 == 0
        rendered, _, _ = S.render_video(S.video_rng(7, v["index"]), v["label"], **TINY)
        assert np.abs(decoded.astype(np.int16) - rendered).mean() < 6.0  # 2.0.0's grainy frames: test_synthetic_decord


def test_pyav_decodes_same_frame_count(video_set: tuple[Path, dict]) -> None:
    av = pytest.importorskip("av")
    root, meta = video_set
    v = meta["videos"][0]
    with av.open(str(root / v["path"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == v["fps"]
        assert sum(1 for _ in container.decode(stream)) == v["frames"]


def test_masks_line_up_with_actor_in_decoded_frames(tmp_path: Path) -> None:
    frames, masks, fps = S.render_video(S.video_rng(11, 0), 0, height=96, width=160,
                                        num_frames=10, fps=25, **PLAIN)
    background = frames[0][~masks[0]][0]
    assert (frames[~masks] == background).all()  # the mask covers everything that differs
    assert (frames[masks] != background).any(axis=-1).all()  # the actor is opaque
    path = tmp_path / "plain.mp4"
    S.write_mp4(str(path), frames, fps)
    decoded = _decode(path).astype(np.int16)
    assert np.abs(decoded - frames).mean() < 3.0
    interior = np.stack([_erode(_erode(m)) for m in masks])
    far = np.stack([_erode(_erode(~m)) for m in masks])  # >= 2 px outside the mask
    assert interior.any() and far.any()
    values, counts = np.unique(frames[interior], axis=0, return_counts=True)
    actor_color = values[counts.argmax()].astype(np.int16)
    assert np.abs(actor_color - background).max() > 40
    inside = decoded[interior]
    assert (np.abs(inside - actor_color).max(axis=-1) < 30).mean() > 0.6
    assert np.abs(decoded[far] - background).max(axis=-1).mean() < 4.0


def test_sizes_cover_landscape_and_portrait_in_default_set() -> None:
    knobs = S.VideoKnobs()
    specs = [S.sample_video_spec(S.video_rng(0, i), knobs) for i in range(S.DEFAULT_NUM_VIDEOS)]
    hs, ws, ts, fpss = map(np.array, zip(*specs))
    assert (ws > hs).any() and (hs > ws).any()
    assert (hs % 2 == 0).all() and (ws % 2 == 0).all()
    short = np.minimum(hs, ws)
    assert short.min() >= knobs.min_short_side and short.max() <= knobs.max_short_side
    assert len(set(np.round(np.maximum(hs, ws) / short, 1))) >= 3
    assert set(fpss) == set(knobs.fps_choices) and len(set(ts)) > 10


def test_spec_predicts_generated_geometry(video_set: tuple[Path, dict]) -> None:
    _, meta = video_set
    knobs = S.make_knobs(S.VideoKnobs, **TINY)
    for v in meta["videos"]:
        spec = S.sample_video_spec(S.video_rng(7, v["index"]), knobs)
        assert spec == (v["height"], v["width"], v["frames"], v["fps"])


# --------------------------------------------------------------------------- class semantics


@pytest.mark.parametrize("index", [0, 1, 2])
def test_first_frame_does_not_depend_on_class(index: int) -> None:
    runs = [S.render_video(S.video_rng(5, index), label, num_frames=9)
            for label in range(len(S.VIDEO_CLASSES))]
    for frames, masks, fps in runs[1:]:
        np.testing.assert_array_equal(frames[0], runs[0][0][0])
        np.testing.assert_array_equal(masks[0], runs[0][1][0])
        assert fps == runs[0][2]
    last = {S.VIDEO_CLASSES[i]: r[0][-1].tobytes() for i, r in enumerate(runs)}
    assert len(set(last[c] for c in ("move_right", "move_left", "move_up", "move_down",
                                     "rotate_cw", "stay_still"))) == 6


def _track(label: str, seed: int = 2, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    """Renders a plain-background video; returns its frames and masks."""
    frames, masks, _ = S.render_video(S.video_rng(seed, 0), S.VIDEO_CLASSES.index(label),
                                      height=128, width=128, num_frames=13, **PLAIN, **kw)
    return frames, masks


def test_translation_classes_move_the_actor_the_right_way() -> None:
    expected = {"move_right": (1, 0), "move_left": (-1, 0), "move_up": (0, -1),
                "move_down": (0, 1)}
    for label, direction in expected.items():
        _, masks = _track(label)
        shift = _centroid(masks[-1]) - _centroid(masks[0])
        assert np.dot(shift, direction) > 20, (label, shift)
        assert abs(shift[1 - int(np.argmax(np.abs(direction)))]) < 3, (label, shift)


def test_returning_and_static_classes() -> None:
    for label in ("go_and_return", "circle_cw", "circle_ccw", "rotate_cw", "stay_still"):
        _, masks = _track(label)
        path = np.stack([_centroid(m) for m in masks])
        assert np.abs(path[-1] - path[0]).max() < 2, label
        travel = np.abs(path - path[0]).max()
        assert (travel > 15) == (label in ("go_and_return", "circle_cw", "circle_ccw")), label


def _signed_turn(points: np.ndarray) -> float:
    """Sum of angle increments of points around their mean (y down: + = clockwise)."""
    rel = points - points.mean(axis=0)
    angles = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
    return float(angles[-1] - angles[0])


def test_circle_and_rotation_directions() -> None:
    for label, sign in (("circle_cw", 1), ("circle_ccw", -1)):
        _, masks = _track(label)
        path = np.stack([_centroid(m) for m in masks])
        assert sign * _signed_turn(path) > math.pi, label
    for label, sign in (("rotate_cw", 1), ("rotate_ccw", -1)):
        frames, masks = _track(label, actor_size=(0.3, 0.3))
        offsets = []
        for f, m in zip(frames, masks):
            inner = _erode(_erode(m))
            colors, counts = np.unique(f[inner], axis=0, return_counts=True)
            marker = inner & (f != colors[counts.argmax()]).any(axis=-1)
            offsets.append(_centroid(marker) - _centroid(m))
        angles = np.unwrap(np.arctan2(*np.stack(offsets)[:, ::-1].T))
        assert sign * (angles[-1] - angles[0]) > math.radians(100), label
        assert (sign * np.diff(angles) > 0).all(), label


# --------------------------------------------------------------------------- knobs


def test_knob_validation_and_presets() -> None:
    with pytest.raises(TypeError, match="not_a_knob"):
        S.make_knobs(S.VideoKnobs, not_a_knob=1)
    with pytest.raises(ValueError):
        S.make_knobs(S.VideoKnobs, min_frames=10, max_frames=5)
    with pytest.raises(ValueError):
        S.make_knobs(S.VideoKnobs, difficulty="impossible")
    with pytest.raises(ValueError):
        S.generate_video_dataset("/nonexistent/never", num_videos=4, num_classes=8)
    hard = S.make_knobs(S.VideoKnobs, "hard", noise=1.0)
    assert hard.distractor_shapes and hard.noise == 1.0
    assert S.make_knobs(S.VideoKnobs, actor_size=[0.1, 0.2]).actor_size == (0.1, 0.2)


def test_clutter_makes_background_busy_but_plain_is_uniform() -> None:
    busy, masks, _ = S.render_video(S.video_rng(1, 1), 0, num_frames=4, difficulty="hard")
    plain, plain_masks, _ = S.render_video(S.video_rng(1, 1), 0, num_frames=4, **PLAIN)
    default, default_masks, _ = S.render_video(S.video_rng(1, 1), 0, num_frames=4)
    assert len(np.unique(default[0][~default_masks[0]], axis=0)) > 100  # the default is textured, not blank
    assert len(np.unique(plain[0][~plain_masks[0]], axis=0)) == 1
    assert len(np.unique(busy[0].reshape(-1, 3), axis=0)) > 500
    change = np.abs(busy.astype(np.int16) - busy[0]).max(axis=(0, -1))
    assert ((change > 20) & ~masks.any(axis=0)).mean() > 0.005  # distractors/band move


def test_cli_writes_a_set(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "tools" / "make_synthetic.py"
    spec = importlib.util.spec_from_file_location("make_synthetic", path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    meta = cli.main(["--out", str(tmp_path / "v"), "--videos", "3", "--seed", "1",
                     "--classes", "3", "--min-frames", "4", "--max-frames", "6",
                     "--max-short-side", "96", "--min-short-side", "96",
                     "--set", "noise=0", "--quiet"])
    assert meta["num_classes"] == 3 and meta["knobs"]["noise"] == 0
    assert len((tmp_path / "v" / "train.csv").read_text().splitlines()) == 3


# --------------------------------------------------------------------------- images


def test_image_dataset_layout_and_masks(tmp_path: Path) -> None:
    kw = dict(num_images=16, seed=2, num_classes=4, min_short_side=64, max_short_side=96)
    meta = S.generate_image_dataset(str(tmp_path / "a"), **kw)
    root = tmp_path / "a"
    names = S.IMAGE_CLASSES[:4]
    # ids as the folder loader numbers the classes (sorted names), not the generator's order
    assert json.loads((root / "classnames.json").read_text()) == {n: i for i, n in enumerate(sorted(names))}
    assert find_classes(str(root / "train")) == sorted(names) != names
    for split in ("train", "val"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(names)
    from PIL import Image

    for item in meta["images"]:
        assert item["path"] == f"{item['split']}/{item['class']}/{item['index']:06d}.png"
        image = np.asarray(Image.open(root / item["path"]).convert("RGB"))
        mask = load_image_mask(str(root / item["mask"]))
        assert image.shape[:2] == mask.shape == (item["height"], item["width"])
        assert 0.01 < mask.mean() < 0.6
        ref_image, ref_mask = S.render_image(S.image_rng(2, item["index"]), item["label"],
                                             min_short_side=64, max_short_side=96)
        np.testing.assert_array_equal(image, ref_image)
        np.testing.assert_array_equal(mask, ref_mask)
    assert {i["split"] for i in meta["images"]} == {"train", "val"}
    S.generate_image_dataset(str(tmp_path / "b"), **kw)
    assert _files(root, "**/*.png") == _files(tmp_path / "b", "**/*.png")


def test_image_classes_differ_in_shape_or_pattern() -> None:
    assert S.IMAGE_CLASSES[:5] == ["disc_solid", "disc_striped", "disc_dotted", "disc_checkered", "disc_gridded"]
    solid, solid_mask = S.render_image(S.image_rng(4, 0), 0, **PLAIN_IMAGE)
    assert len(np.unique(solid[solid_mask], axis=0)) == 1
    for label in range(1, 5):  # same shape and pose, two colours inside the object
        filled, mask = S.render_image(S.image_rng(4, 0), label, **PLAIN_IMAGE)
        np.testing.assert_array_equal(mask, solid_mask)
        assert len(np.unique(filled[mask], axis=0)) == 2
    _, square_mask = S.render_image(S.image_rng(4, 0), S.IMAGE_CLASSES.index("square_solid"), **PLAIN_IMAGE)
    assert not np.array_equal(square_mask, solid_mask)


def test_fill_marks_cover_the_area_fractions_worked_by_hand() -> None:
    """Over whole periods the marks cover 0, 1/2, pi 0.3^2, 1/2 and 1 - 0.72^2 of the fill."""
    u, v = np.meshgrid((np.arange(4000) + 0.5) / 400, (np.arange(4000) + 0.5) / 400)  # 10 x 10 periods
    expected = {"solid": 0.0, "striped": 0.5, "dotted": math.pi * 0.09, "checkered": 0.5, "gridded": 1 - 0.72 ** 2}
    for pattern, fraction in expected.items():
        assert _fill_marks(pattern, u, v).mean() == pytest.approx(fraction, abs=2e-3), pattern
    # striped varies along u only, checkered flips with every period along either axis
    stripes = _fill_marks("striped", u, v)
    assert (stripes == stripes[:1]).all()
    checks = _fill_marks("checkered", u, v)
    assert checks[0, 0] != checks[0, 400] and checks[0, 0] != checks[400, 0] and checks[0, 0] == checks[400, 400]
    with pytest.raises(ValueError, match="unknown fill pattern"):
        _fill_marks("wavy", u, v)



# --------------------------------------------------------------------------- generator 2.0.0: camera, distractors


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` one-pixel 4-neighbour dilations of a 2-D bool mask."""
    return ~_erode_n(~mask, steps)


def _erode_n(mask: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` erosions (the frame border counts as outside, so dilation near it is generous)."""
    for _ in range(steps):
        mask = _erode(mask)
    return mask


def test_default_version_is_1_2_1_and_1_2_0_and_2_0_0_are_kept() -> None:
    assert S.GENERATOR_VERSION == "1.2.1" and set(S.VIDEO_VERSIONS) == {"1.2.0", "1.2.1", "2.0.0"}
    for version in ("1.2.0", "1.2.1"):
        old = S.make_knobs(S.VideoKnobs, version=version)
        assert old.camera_pan == old.camera_sway == old.grain == 0 and not old.actor_texture
        assert (old.clutter, old.num_distractors, old.motion_amplitude) == (0.3, (0, 2), (0.45, 0.6))
        assert S.make_knobs(S.VideoKnobs, "hard", version) == S.make_knobs(S.VideoKnobs, "hard", "1.2.0")
        with pytest.raises(ValueError, match="camera_pan"):
            S.make_knobs(S.VideoKnobs, version=version, camera_pan=0.1)
    assert S.make_knobs(S.VideoKnobs) == S.VideoKnobs() == S.make_knobs(S.VideoKnobs, version="1.2.1")
    new = S.make_knobs(S.VideoKnobs, version="2.0.0")
    assert (new.camera_pan, new.camera_sway, new.grain, new.actor_texture) == (0.15, 0.1, 40.0, True)
    assert (new.clutter, new.num_distractors, new.motion_amplitude) == (1.0, (2, 4), (0.3, 0.45))
    assert S.make_knobs(S.VideoKnobs, "easy", "2.0.0").camera_pan == 0.08
    with pytest.raises(ValueError, match="camera_pan"):
        S.make_knobs(S.VideoKnobs, version="1.2.0", camera_pan=0.1)
    with pytest.raises(ValueError, match="version"):
        S.make_knobs(S.VideoKnobs, version="3.0.0")


@pytest.mark.parametrize("label, kw, digest", [
    # sha256 of frames + masks rendered by generator 1.2.0 (commit 733a7d5, before 2.0.0 existed)
    (6, dict(difficulty="hard", min_short_side=112, max_short_side=112),
     "2a98ee327e08b023a626a16369c318479f024d2777c658f3bee27f0c04045639"),
    (2, {}, "e471edd96bb49cdec3b09bb36b596c9a30185cdbd8819ebee3f02299860f255f"),
])
def test_version_1_2_0_renders_what_1_2_0_rendered(label: int, kw: dict, digest: str) -> None:
    import hashlib

    index = 3 if label == 6 else 4
    frames, masks, fps = S.render_video(S.video_rng(5, index), label, num_frames=6, version="1.2.0", **kw)
    assert fps == 30 and hashlib.sha256(frames.tobytes() + masks.tobytes()).hexdigest() == digest


def test_2_0_0_same_seed_same_frames_other_seed_differs() -> None:
    a = S.render_video(S.video_rng(8, 2), 3, num_frames=6, version="2.0.0")
    b = S.render_video(S.video_rng(8, 2), 3, num_frames=6, version="2.0.0")
    c = S.render_video(S.video_rng(9, 2), 3, num_frames=6, version="2.0.0")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def _two_frame_scene(seed: int, **kw: object):
    """A 2-frame 2.0.0 scene (96x128) with the camera's zoom off, and its knobs."""
    from iared_video.synthetic.scenes import sample_scene

    knobs = S.make_knobs(S.VideoKnobs, version="2.0.0", camera_zoom=0.0, noise=0.0, num_distractors=(0, 0), **kw)
    return sample_scene(S.video_rng(seed, 0), knobs, 96, 128, 2, 25, "2.0.0")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_background_moves_by_the_drawn_camera_shift(seed: int) -> None:
    """Frame 1 is frame 0 shifted by the drawn camera move (pan + sway + shake) wherever both show background."""
    from scipy.ndimage import map_coordinates

    from iared_video.synthetic.scenes import render_scene

    scene = _two_frame_scene(seed)
    frames, masks = render_scene(scene, "move_right")
    dx, dy = scene.camera.centers[1] - scene.camera.centers[0]
    assert np.hypot(dx, dy) > 1.0  # the camera does move
    h, w = masks.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    actor = _dilate(masks[0] | masks[1], 3)

    def error(sx: float, sy: float) -> float:
        """Mean |frame1(x) - frame0(x + shift)| over background pixels whose source lies inside frame 0."""
        src = [map_coordinates(frames[0][..., c].astype(np.float64), [ys + sy, xs + sx], order=1) for c in range(3)]
        sx0, sy0 = xs + sx, ys + sy
        inside = (sx0 >= 0) & (sx0 <= w - 1) & (sy0 >= 0) & (sy0 <= h - 1) & ~actor
        inside &= ~_dilate(masks[0], 3)[np.clip(np.round(sy0), 0, h - 1).astype(int),
                                         np.clip(np.round(sx0), 0, w - 1).astype(int)]
        return float(np.abs(np.stack(src, -1) - frames[1])[inside].mean())

    at_shift = error(dx, dy)
    assert at_shift < 4.0, at_shift  # bilinear of bilinear on a grainy texture: a few levels
    for off in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        assert error(dx + off[0], dy + off[1]) > 3 * at_shift
    assert error(0.0, 0.0) > 3 * at_shift


def test_background_shift_is_exact_for_whole_pixels() -> None:
    """A camera moved by whole pixels (hand-set) shifts the background by exactly them, pixel for pixel."""
    from iared_video.synthetic.scenes import render_scene

    scene = _two_frame_scene(4)
    scene.camera.centers[1] = scene.camera.centers[0] + np.array([3.0, -2.0])
    frames, masks = render_scene(scene, "stay_still")
    free = ~_dilate(masks[0] | masks[1], 2)
    shifted = frames[0][:-2, 3:] == frames[1][2:, :-3]  # frame1[y, x] = frame0[y - 2, x + 3]
    assert shifted.all(axis=-1)[free[2:, :-3] & free[:-2, 3:]].all()


def test_distractor_paths_do_not_depend_on_the_label() -> None:
    """Same seed, every class: everything but the actor is the same, pixel for pixel, and distractors move."""
    runs = [S.render_video(S.video_rng(6, 1), label, height=96, width=128, num_frames=10, noise=0.0, version="2.0.0",
                           num_distractors=(4, 4), actor_like_distractors=1.0)
            for label in range(8)]
    ref_frames, ref_masks, _ = runs[0]
    for frames, masks, _ in runs[1:]:
        free = ~(masks | ref_masks)
        np.testing.assert_array_equal(frames[free], ref_frames[free])
    from iared_video.synthetic.scenes import sample_scene

    knobs = S.make_knobs(S.VideoKnobs, version="2.0.0", noise=0.0, num_distractors=(4, 4), actor_like_distractors=1.0)
    scene = sample_scene(S.video_rng(6, 1), knobs, 96, 128, 10, None, "2.0.0")
    assert all(m.trajectory in S.VIDEO_CLASSES for m in scene.movers)
    paths = np.array([[m.pose(u)[:2] for u in (0.0, 0.5, 1.0)] for m in scene.movers])
    assert np.abs(paths - paths[:, :1]).max() > 5  # they move like actors, whatever the label


def test_masks_follow_the_actor_through_the_camera() -> None:
    """On a plain world with the camera moving, the mask is exactly where the frame differs from the world's colour,
    and the mask's centroid mapped back through the camera moves as the class says, in the world."""
    kw = dict(clutter=0.0, grain=0.0, noise=0.0, num_distractors=(0, 0), background_motion=0.0, camera_zoom=0.0)
    from iared_video.synthetic.scenes import render_scene, sample_scene

    scene = sample_scene(S.video_rng(3, 0), S.make_knobs(S.VideoKnobs, version="2.0.0", **kw), 128, 128, 13, 25,
                         "2.0.0")
    frames, masks = render_scene(scene, "move_right")
    background = frames[0][~masks[0]][0]
    assert (frames[~masks] == background).all() and (frames[masks] != background).any(axis=-1).all()
    cam = scene.camera
    world = np.stack([_centroid(m) + 0.5 - [cam.width / 2, cam.height / 2] + cam.centers[i]
                      for i, m in enumerate(masks)])
    screen_shift = _centroid(masks[-1]) - _centroid(masks[0])
    camera_shift = cam.centers[-1] - cam.centers[0]
    assert np.abs(world[-1] - world[0] - [scene.motion.amplitude, 0.0]).max() < 1.5
    assert np.abs(screen_shift - ([scene.motion.amplitude, 0.0] - camera_shift)).max() < 1.5
    assert np.hypot(*camera_shift) > 2 and scene.motion.amplitude > 10


def test_actor_stays_in_frame_and_keeps_its_look() -> None:
    knobs = S.make_knobs(S.VideoKnobs, version="2.0.0")
    for index in range(12):
        frames, masks, _ = S.render_video(S.video_rng(0, index), index % 8, version="2.0.0")
        assert masks.any(axis=(1, 2)).all()
        assert not (masks[:, 0].any() or masks[:, -1].any() or masks[:, :, 0].any() or masks[:, :, -1].any())
    assert knobs.actor_texture and knobs.distractor_shapes and knobs.num_distractors[0] >= 1
