#!/usr/bin/env python
"""Accuracy vs GMACs and accuracy vs measured throughput for every method found under RESULTS_DIR.

Reads every ``test_results.json`` (method: its folder name and policy) and every JSON with a ``rows`` list
(benchmark and sweep outputs; rows without accuracy appear in the table only). Writes ``pareto.json``,
``pareto_gmacs.png`` and ``pareto_throughput.png`` into ``--out-dir`` (default RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iared_video.utils.benchmark import format_table, save_json  # noqa: E402
from iared_video.utils.plots import plot_series  # noqa: E402

THROUGHPUT_KEYS = ("throughput", "clips_per_s", "images_per_s")


def _first(d: dict, keys: tuple) -> float | None:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _accuracy(d: dict) -> float | None:
    if d.get("accuracy") is not None:
        return float(d["accuracy"])
    for key in sorted(k for k in d if k.endswith("top1_err")):  # test_results: video/view top-1 error (%)
        if isinstance(d[key], (int, float)):
            return 100.0 - float(d[key])
    return None


def points_from_file(path: Path) -> list[dict]:
    """Pareto points from one JSON file (empty when it holds none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    if path.name == "test_results.json":
        method = f"{path.parent.name} ({data.get('policy', '?')})"
        return [{"method": method, "accuracy": _accuracy(data), "gmacs": data.get("gmacs_per_view"),
                 "throughput": _first(data, THROUGHPUT_KEYS), "source": str(path)}]
    points = []
    for row in data.get("rows", []) if isinstance(data.get("rows"), list) else []:
        method = row.get("method") or row.get("variant") or path.stem
        points.append({"method": f"{method} [{path.stem}]", "accuracy": _accuracy(row),
                       "gmacs": _first(row, ("gmacs", "gmacs_per_sample")),
                       "throughput": _first(row, THROUGHPUT_KEYS), "source": str(path)})
    return points


def collect(root: str) -> list[dict]:
    """Every point in every JSON file under ``root`` (skipping pareto.json itself)."""
    points = []
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".json") and name != "pareto.json":
                points.extend(points_from_file(Path(folder) / name))
    return points


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results_dir")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or args.results_dir
    points = collect(args.results_dir)
    print(format_table(points, columns=("method", "accuracy", "gmacs", "throughput", "source")))
    for x, name in (("gmacs", "pareto_gmacs.png"), ("throughput", "pareto_throughput.png")):
        series: dict[str, list] = {}
        for p in points:
            series.setdefault(p["method"], []).append((p[x], p["accuracy"]))
        plot_series(series, x, "top-1 accuracy (%)", os.path.join(out_dir, name), f"accuracy vs {x}")
    save_json({"points": points}, os.path.join(out_dir, "pareto.json"))
    print(f"wrote {out_dir}/pareto.json, pareto_gmacs.png, pareto_throughput.png")
    return points


if __name__ == "__main__":
    main()
