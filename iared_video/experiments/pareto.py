"""Accuracy vs GMACs and accuracy vs measured throughput for every method found under RESULTS.

    python tools/pareto.py output/main_job_video/main_job_results.json   # one results file
    python tools/pareto.py output/                                        # every results file under a folder

RESULTS is a folder or one JSON file. Reads every ``test_results.json`` (method: its folder name and policy)
and every JSON with a ``rows`` list (the main job's ``main_job_results.json``, benchmark and sweep outputs;
rows without accuracy appear in the table only). Accuracy is ``100 - error`` (``top1_err``, else
``clip1_err``); cost is ``gmacs_per_view`` (or ``gmacs``); throughput is ``clips_per_s`` / ``images_per_s``
(or ``throughput``). Writes ``pareto.json``, ``pareto_gmacs.png`` and ``pareto_throughput.png`` (labelled
axes, one named series per method) into ``--out-dir`` (default: RESULTS, or the folder holding it).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from iared_video.utils.plots import plot_series
from iared_video.utils.results import format_table, save_json

THROUGHPUT_KEYS = ("throughput", "clips_per_s", "images_per_s")
GMACS_KEYS = ("gmacs", "gmacs_per_view", "gmacs_per_sample")
ERROR_KEYS = ("top1_err", "clip1_err")
AXIS_LABELS = {"gmacs": "GMACs per view", "throughput": "measured throughput"}
ACCURACY_LABELS = {"top1_err": "top-1 accuracy (%)", "clip1_err": "clip-1 accuracy (%)"}


def _first(d: dict, keys: tuple) -> float | None:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _accuracy(d: dict) -> float | None:
    if d.get("accuracy") is not None:
        return float(d["accuracy"])
    for key in ERROR_KEYS:
        if isinstance(d.get(key), (int, float)):
            return 100.0 - float(d[key])
    for key in sorted(k for k in d if k.endswith("top1_err")):  # test_results: video/view top-1 error (%)
        if isinstance(d[key], (int, float)):
            return 100.0 - float(d[key])
    return None


def _metric(d: dict) -> str | None:
    """Which error the accuracy comes from (``top1_err``, ``clip1_err``), None when given as accuracy."""
    return next((key for key in ERROR_KEYS if isinstance(d.get(key), (int, float))), None)


def _unit(d: dict) -> str | None:
    """What the throughput counts: clips or images per second (None when unknown)."""
    return next((unit for key, unit in (("clips_per_s", "clips/s"), ("images_per_s", "images/s")) if key in d), None)


def points_from_file(path: Path, tag: bool = True) -> list[dict]:
    """Pareto points from one JSON file (empty when it holds none); ``tag`` appends the file's stem to methods."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    if path.name == "test_results.json":
        method = f"{path.parent.name} ({data.get('policy', '?')})"
        return [{"method": method, "accuracy": _accuracy(data), "gmacs": data.get("gmacs_per_view"),
                 "throughput": _first(data, THROUGHPUT_KEYS), "unit": _unit(data), "metric": _metric(data),
                 "source": str(path)}]
    points = []
    for row in data.get("rows", []) if isinstance(data.get("rows"), list) else []:
        if not isinstance(row, dict):
            continue
        method = str(row.get("method") or row.get("variant") or path.stem)
        points.append({"method": f"{method} [{path.stem}]" if tag else method, "accuracy": _accuracy(row),
                       "gmacs": _first(row, GMACS_KEYS), "throughput": _first(row, THROUGHPUT_KEYS),
                       "unit": _unit(row), "metric": _metric(row), "source": str(path)})
    return points


def collect(root: str) -> list[dict]:
    """Every point in the JSON file ``root``, or in every JSON file under the folder ``root`` (not pareto.json)."""
    if not os.path.exists(root):
        raise FileNotFoundError(f"results {root} do not exist")
    if os.path.isfile(root):
        return points_from_file(Path(root), tag=False)
    points = []
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".json") and name != "pareto.json":
                points.extend(points_from_file(Path(folder) / name))
    return points


def axis_label(x: str, points: list[dict]) -> str:
    """The x-axis label of the ``x`` plot ("GMACs per view", "measured throughput (clips/s)"...)."""
    if x != "throughput":
        return AXIS_LABELS[x]
    units = sorted({p["unit"] for p in points if p.get("unit")})
    return f"{AXIS_LABELS[x]} ({units[0] if len(units) == 1 else 'samples/s'})"


def accuracy_label(points: list[dict]) -> str:
    """The y-axis label: "clip-1 accuracy (%)" / "top-1 accuracy (%)" when every point agrees."""
    metrics = {p.get("metric") for p in points if p.get("accuracy") is not None}
    return ACCURACY_LABELS.get(metrics.pop() or "", "accuracy (%)") if len(metrics) == 1 else "accuracy (%)"


def plot_tradeoffs(points: list[dict], out_dir: str) -> list[str]:
    """``pareto_gmacs.png`` and ``pareto_throughput.png``: accuracy against cost, one named series per method."""
    paths = []
    for x, name, title in (("gmacs", "pareto_gmacs.png", "accuracy vs GMACs"),
                           ("throughput", "pareto_throughput.png", "accuracy vs measured throughput")):
        series: dict[str, list] = {}
        for p in points:
            series.setdefault(p["method"], []).append((p[x], p["accuracy"]))
        labels = {m: [m if len(pts) == 1 else ""] * len(pts) for m, pts in series.items()}  # name single points
        paths.append(plot_series(series, axis_label(x, points), accuracy_label(points), os.path.join(out_dir, name),
                                 title, labels))
    return paths


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", metavar="RESULTS", help="a results folder or one results JSON file")
    parser.add_argument("--out-dir", default=None, help="where the plots and pareto.json go")
    args = parser.parse_args(argv)
    points = collect(args.results_dir)
    out_dir = args.out_dir or (os.path.dirname(os.path.abspath(args.results_dir))
                               if os.path.isfile(args.results_dir) else args.results_dir)
    print(format_table(points, columns=("method", "accuracy", "gmacs", "throughput", "source")))
    plot_tradeoffs(points, out_dir)
    save_json({"points": points}, os.path.join(out_dir, "pareto.json"))
    print(f"wrote {out_dir}/pareto.json, pareto_gmacs.png, pareto_throughput.png")
    return points

