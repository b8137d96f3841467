"""The FractalDB-style formula generator: determinism, hand-checked renders, class structure, layout."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from iared_video.synthetic import formula


def _scaled(ox: float, oy: float, s: float = 0.5) -> list[float]:
    """The map ``(x, y) -> s (x, y) + (ox, oy)`` as ``(a, b, c, d, e, f)``."""
    return [s, 0.0, 0.0, s, ox, oy]


SIERPINSKI = np.array([_scaled(0, 0), _scaled(0.5, 0), _scaled(0.25, 0.5)])
SQUARE = np.array([_scaled(0, 0), _scaled(0.5, 0), _scaled(0, 0.5), _scaled(0.5, 0.5)])


def _files(root: str) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_same_seed_same_images_and_png_bytes(tmp_path) -> None:
    system = formula.sample_ifs(np.random.default_rng(3))
    np.testing.assert_array_equal(system, formula.sample_ifs(np.random.default_rng(3)))
    first = formula.render_class(system, 5, 32, np.random.default_rng(4), num_points=2048)
    np.testing.assert_array_equal(first, formula.render_class(system, 5, 32, np.random.default_rng(4),
                                                              num_points=2048))

    kwargs = dict(num_classes=2, per_class=3, val_per_class=1, size=32, num_points=2048, progress=False)
    formula.generate_formula_dataset(str(tmp_path / "a"), seed=7, num_workers=1, **kwargs)
    formula.generate_formula_dataset(str(tmp_path / "b"), seed=7, num_workers=2, **kwargs)
    meta_c = formula.generate_formula_dataset(str(tmp_path / "c"), seed=8, num_workers=1, **kwargs)
    a, b = _files(str(tmp_path / "a")), _files(str(tmp_path / "b"))
    pngs = sorted(k for k in a if k.endswith(".png"))
    assert len(pngs) == 8 and pngs == sorted(k for k in b if k.endswith(".png"))
    assert all(a[k] == b[k] for k in pngs)  # byte-identical, whatever the worker count
    meta_a = json.loads(a["meta.json"])
    assert [c["system"] for c in meta_a["classes"]] != [c["system"] for c in meta_c["classes"]]


def _fixed_render(systems: list[np.ndarray], size: int) -> np.ndarray:
    """White-on-black renders at scale 1, offset 0, no flip."""
    batch = len(systems)
    points = formula.chaos_game(systems, 100_000, np.random.default_rng(0))
    place = formula.Placement(scale=np.ones(batch), offset=np.zeros((batch, 2), dtype=np.int64),
                              flip=np.zeros(batch, dtype=bool))
    return formula.render(points, size, np.ones((batch, 3)), np.zeros((batch, 3)), placement=place)


def test_sierpinski_and_square_pixels_by_hand() -> None:
    # Both attractors have the bounding box [0, 1]^2: the Sierpinski triangle has vertices
    # (0, 0), (1, 0), (0.5, 1) (fixed points of its three maps), the square IFS tiles the unit
    # square with its four quadrants, so normalisation is the identity. At scale 1, offset 0,
    # no flip, unit point (u, v) lands on column round(63 u), row round(63 v) of a 64 px image.
    #
    # * (0.5, 0.25) -> (row 16, col 32); that pixel and its 8 neighbours span u in [0.48, 0.54],
    #   v in [0.23, 0.28]. The first removed triangle has vertices (0.25, 0.5), (0.75, 0.5),
    #   (0.5, 0): at height v it spans u in [0.5 - v/2, 0.5 + v/2], i.e. [0.385, 0.615] at
    #   v = 0.23, so the whole block is more than 0.1 inside a hole of the Sierpinski triangle
    #   (the attractor never enters it), but inside the filled square.
    # * (0.1, 0.05) -> (row 3, col 6). It lies on the segment (0.125, 0)-(0.0625, 0.125): the
    #   triangle's right edge (1, 0)-(0.5, 1) after the first map three times (scale 1/8), at
    #   t = 0.4. Edges of every sub-triangle belong to the attractor, so the pixel is covered
    #   in both images.
    # * (0.1, 0.9) -> (row 57, col 6): left of the edge u = v / 2 = 0.45 of the big triangle,
    #   so outside the Sierpinski triangle, inside the square.
    tri, square = _fixed_render([SIERPINSKI, SQUARE], 64)
    assert (tri[15:18, 31:34] == 0).all()
    assert (square[15:18, 31:34] > 0).all()
    assert (tri[3, 6] > 0).all() and (square[3, 6] > 0).all()
    assert (tri[57, 6] == 0).all() and (square[57, 6] > 0).all()
    assert (square > 0).all()  # the uniform square measure hits every pixel at ~24 points each


def test_filter_keeps_fractals_and_rejects_degenerate_systems() -> None:
    line = np.array([_scaled(0, 0), _scaled(0.5, 0.5)])  # attractor: the diagonal, fills 1/32 of its box
    expanding = np.array([_scaled(0, 0, 1.5), _scaled(1, 0, 1.5)])  # diverges
    keep = formula.check_systems([SIERPINSKI, SQUARE, line, expanding], np.random.default_rng(0))
    assert keep.tolist() == [True, False, False, False]  # the filled square fills too much


def test_instances_of_a_class_are_more_alike_than_across_classes() -> None:
    masks = []
    for k in range(5):
        system = formula.sample_ifs(np.random.default_rng([1, 0, k]))
        _, points = formula.perturbed_instances(system, 2, 4096, np.random.default_rng([1, 1, k]))
        masks.append(formula.occupancy(points))  # normalised occupancy, before placement
        assert not np.array_equal(points[0], points[1])
    within = [_iou(m[0], m[1]) for m in masks]
    across = [_iou(masks[i][0], masks[j][1]) for i in range(5) for j in range(5) if i != j]
    assert np.mean(within) > np.mean(across)
    assert min(within) > np.mean(across)


def test_dataset_layout_reads_as_image_folder(tmp_path) -> None:
    from iared_video.datasets.imagenet import find_classes, scan_image_folder

    meta = formula.generate_formula_dataset(str(tmp_path), num_classes=3, per_class=4, size=32, val_per_class=2,
                                            seed=5, num_points=2048, num_workers=1, progress=False)
    names = ["ifs_0000", "ifs_0001", "ifs_0002"]
    for split, count in (("train", 4), ("val", 2)):
        root = str(tmp_path / split)
        assert find_classes(root) == names
        paths, labels = scan_image_folder(root, names)
        assert labels == [k for k in range(3) for _ in range(count)]
        assert [os.path.basename(p) for p in paths[:count]] == [f"{i:05d}.png" for i in range(count)]
        with Image.open(paths[0]) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
    with open(tmp_path / "meta.json", encoding="utf-8") as f:
        assert json.load(f) == meta
    assert meta["generator"] == formula.GENERATOR_NAME and meta["version"] == formula.GENERATOR_VERSION
    assert meta["seed"] == 5 and meta["num_points"] == 2048
    assert meta["arguments"] == dict(num_classes=3, per_class=4, size=32, val_per_class=2, seed=5, num_points=2048,
                                     num_workers=1, progress=False)
    assert [c["name"] for c in meta["classes"]] == names
    for k, entry in enumerate(meta["classes"]):
        expected = formula.sample_ifs(formula.class_rng(5, k, formula.SYSTEM_STREAM))
        np.testing.assert_array_equal(np.array(entry["system"]), expected)


def test_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError):
        formula.generate_formula_dataset(str(tmp_path), num_classes=0, progress=False)
