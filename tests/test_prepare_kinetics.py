"""tools/prepare_kinetics.py on a fake Kinetics tree: rows, label indices, and every clip left out named."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from iared_video.datasets.bad_data import DataSplitError
from iared_video.datasets.kinetics import read_split_csv
from iared_video.datasets.prepare_kinetics import clip_stem, kinetics400_classes, prepare_kinetics
from iared_video.synthetic.writers import write_mp4

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Three real Kinetics-400 classes and their positions in the alphabetical 400-class list (counted by hand
# in datasets/kinetics400_classes.txt: first line, second line, last line).
CLASSES = {"abseiling": 0, "air drumming": 1, "zumba": 399}
HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def test_class_list_is_torchvisions_alphabetical_400() -> None:
    from torchvision.models.video import R3D_18_Weights

    classes = kinetics400_classes()
    assert classes == list(R3D_18_Weights.DEFAULT.meta["categories"])
    assert len(classes) == len(set(classes)) == 400
    assert classes == sorted(classes)
    assert [classes[i] for i in CLASSES.values()] == list(CLASSES)
    with open(os.path.join(ROOT, "datasets", "kinetics400_classes.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == classes


def _write_annotations(path: str, rows: list[list[str]], header: list[str] = HEADER) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _tiny_video(path: str, seed: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = np.random.default_rng(seed).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    write_mp4(path, frames, fps=10)


@pytest.fixture
def fake_kinetics(tmp_path) -> dict:
    """Two train and one val clip per class; train in per-class folders (crawler), val flat (archives).

    One train clip of "air drumming" is never written (missing), one of "zumba" is cut to 300 bytes (corrupt);
    one val clip is an .mkv. test.csv is an unlabeled release (no label column).
    """
    ann, videos = tmp_path / "annotations", tmp_path / "videos"
    ann.mkdir()
    train, val, stems = [], [], {}
    for k, name in enumerate(CLASSES):
        for i in range(2):
            clip = [name, f"id-{k}_t{i}", str(10 * i), str(10 * i + 10), "train"]
            stems[(name, "train", i)] = clip_stem(clip[1], int(clip[2]), int(clip[3]))
            train.append(clip)
        val.append([name, f"id-{k}_v", "5", "15", "val"])
        stems[(name, "val", 0)] = clip_stem(f"id-{k}_v", 5, 15)
    missing, corrupt = stems[("air drumming", "train", 1)], stems[("zumba", "train", 0)]
    for (name, split, i), stem in stems.items():
        if stem == missing:
            continue
        folder = videos / "train" / name.replace(" ", "_") if split == "train" else videos / "val"
        ext = ".mkv" if (name, split) == ("zumba", "val") else ".mp4"
        _tiny_video(str(folder / (stem + ext)), seed=len(stem) + i)
    corrupt_path = videos / "train" / "zumba" / (corrupt + ".mp4")
    corrupt_path.write_bytes(corrupt_path.read_bytes()[:300])
    _write_annotations(str(ann / "train.csv"), train)
    _write_annotations(str(ann / "validate.csv"), val)
    _write_annotations(str(ann / "test.csv"), [["id-t", "0", "10", "test"]], HEADER[1:])
    return {"ann": str(ann), "videos": str(videos), "out": str(tmp_path / "lists"), "stems": stems,
            "missing": missing, "corrupt": corrupt}


def test_prepare_rows_labels_and_left_out(fake_kinetics) -> None:
    f = fake_kinetics
    results = {r.split: r for r in prepare_kinetics(f["ann"], f["videos"], f["out"], workers=2)}
    paths, labels = read_split_csv(os.path.join(f["out"], "train.csv"), " ", "", f["out"])
    # 6 annotated train clips - 1 missing - 1 corrupt = 4 rows.
    expected = [(name, i) for name in CLASSES for i in range(2)
                if f["stems"][(name, "train", i)] not in (f["missing"], f["corrupt"])]
    assert len(paths) == 4
    assert labels == [CLASSES[name] for name, _ in expected] == [0, 0, 1, 399]
    assert [os.path.basename(p) for p in paths] == [f["stems"][(name, "train", i)] + ".mp4" for name, i in expected]
    assert all(os.path.exists(p) for p in paths)  # relative to the output folder, as the loader resolves them
    val_paths, val_labels = read_split_csv(os.path.join(f["out"], "val.csv"), " ", "", f["out"])
    assert val_labels == [0, 1, 399]
    assert val_paths[2].endswith(f["stems"][("zumba", "val", 0)] + ".mkv")
    with open(os.path.join(f["out"], "left_out.csv"), newline="", encoding="utf-8") as fh:
        left = {row["clip"]: (row["split"], row["reason"]) for row in csv.DictReader(fh)}
    assert left[f["missing"]][0] == "train.csv" and left[f["missing"]][1].startswith("missing")
    assert left[f["corrupt"]][0] == "train.csv" and left[f["corrupt"]][1].startswith("undecodable")
    assert left["id-t_000000_000010"] == ("test.csv", "no label in the annotation file")
    assert len(left) == 3
    assert results["test.csv"].unlabeled == 1 and not results["test.csv"].written
    assert not os.path.exists(os.path.join(f["out"], "test.csv"))


def test_tool_prints_how_many_left_out(fake_kinetics, capsys) -> None:
    import runpy

    f = fake_kinetics
    argv = ["--annotations", f["ann"], "--videos", f["videos"], "--out", f["out"], "--workers", "0", "--quiet"]
    tool = runpy.run_path(os.path.join(ROOT, "tools", "prepare_kinetics.py"))
    tool["main"](argv)
    printed = capsys.readouterr().out
    assert "train.csv: 4 clips written, 2 left out" in printed
    assert "val.csv: 3 clips written, 0 left out" in printed
    assert "3 clips left out in all" in printed


def test_unknown_label_is_a_clear_error(fake_kinetics) -> None:
    f = fake_kinetics
    _write_annotations(os.path.join(f["ann"], "validate.csv"), [["not a kinetics class", "x", "0", "10", "val"]])
    with pytest.raises(DataSplitError, match="not Kinetics-400 classes"):
        prepare_kinetics(f["ann"], f["videos"], f["out"])
