"""The method registry: every registered method builds, trains a step, counts its FLOPs and benchmarks; no module
outside ``iared_video/methods/`` matches a method's name."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from iared_video.engine.benchmark import BenchSettings, run_benchmark
from iared_video.engine.trainer import train
from iared_video.methods import (
    build_model,
    get_method,
    load_config,
    method_for_cfg,
    method_names,
    method_of,
    model_gmacs_per_sample,
)
from iared_video.models.flops import fvcore_gflops

ROOT = Path(__file__).resolve().parents[1]
REGISTERED = ["dense", "iared", "iared_gumbel", "dynamicvit", "drop_random", "drop_attention", "drop_temporal_diff",
              "tome", "evit"]
#: Table labels (rows, output folders) that differ from the method name.
LABELS = {"drop_random": "random", "drop_attention": "attention", "drop_temporal_diff": "temporal_diff"}
TINY = ["MODEL.NUM_CLASSES", "3", "MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "2",
        "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "IARED.NUM_GROUPS", "2",
        "IARED.INTERPRETER_DIM", "8", "DROP.RATIO", "0.4", "DYNAMICVIT.PRUNE_LOCATIONS", "[1, 2]",
        "DYNAMICVIT.BACKBONE_HOLD_EPOCHS", "0.0", "TOME.R", "3", "EVIT.LOCATIONS", "[1, 2]", "EVIT.KEEP_RATE", "0.5",
        "SOLVER.MAX_EPOCH", "1", "IARED.INTERPRETER_EPOCHS", "1", "IARED.BACKBONE_EPOCHS", "1",
        "TRAIN.EVAL_PERIOD", "0", "DEVICE", "cpu", "LOG_PERIOD", "1", "SOLVER.OPTIMIZING_METHOD", "adamw",
        "SOLVER.BASE_LR", "1e-2"]


def cfg_of(name: str, tmp_path: Path | None = None):
    method = get_method(name)
    out = ["OUTPUT_DIR", str(tmp_path / name)] if tmp_path else []
    return load_config(None, [*TINY, *method.config_opts(), *out])


def test_the_registered_methods_and_how_configs_select_them() -> None:
    assert method_names() == REGISTERED
    for name in REGISTERED:
        assert method_for_cfg(cfg_of(name)).name == name and cfg_of(name).METHOD.NAME == name
        assert get_method(name).label == LABELS.get(name, name)
        assert get_method(get_method(name).label) is get_method(name)  # tables name them by label


def test_a_config_with_the_former_method_keys_says_what_replaces_them(tmp_path: Path) -> None:
    from iared_video.config import ConfigError

    path = tmp_path / "old.yaml"
    path.write_text("IARED:\n  POLICY: interpreter\n  GUMBEL: True\n  DROP_RATIO: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    message = str(err.value)
    assert "IARED.POLICY interpreter is now METHOD.NAME iared" in message
    assert "IARED.GUMBEL True is now METHOD.NAME iared_gumbel" in message
    assert "IARED.DROP_RATIO is now DROP.RATIO" in message and "unknown key" not in message


def _one_batch(cfg, split):
    gen = torch.Generator().manual_seed(0)
    return [{"inputs": torch.randn(4, 3, 2, 32, 32, generator=gen), "label": torch.tensor([0, 1, 2, 0])}]


@pytest.mark.parametrize("name", REGISTERED)
def test_each_method_builds_trains_a_step_counts_flops_and_benchmarks(name: str, tmp_path: Path) -> None:
    cfg = cfg_of(name, tmp_path)
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    model = train(cfg, loader_fn=_one_batch)  # every stage of its schedule, one step each
    assert method_of(model).name == name
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"{name}: training changed nothing"
    model.eval()
    x = torch.randn(1, 3, 2, 32, 32)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x, return_policy=True)
    torch.manual_seed(1)
    assert model_gmacs_per_sample(model, out).item() == pytest.approx(fvcore_gflops(model, x), rel=2e-3)
    settings = BenchSettings(batch_sizes=[2], warmup=0, iters=1, keep_ratios=[0.5], measure_memory=False,
                             methods=["dense", name] if name != "dense" else ["dense"],
                             methods_at_keep=[name] if get_method(name).knob is not None else [])
    rows = run_benchmark(cfg, settings, "cpu")["rows"]
    assert rows[0]["variant"] == "dense" and len(rows) >= 2 - (name == "dense")
    for row in rows[1:]:
        assert row["policy"] == name and row["ideal_speedup"] > 1.0 and math.isfinite(row["speedup"]), row


def _method_name_comparisons(path: Path, names: set[str]) -> list[str]:
    """``x == "tome"`` / ``x in ("random", ...)`` comparisons against a method's name or label in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            values = [side] if isinstance(side, ast.Constant) else getattr(side, "elts", [])
            hits = [v.value for v in values if isinstance(v, ast.Constant) and v.value in names]
            if hits and any("METHOD" in ast.unparse(s) or "policy" in ast.unparse(s).lower()
                            or "method" in ast.unparse(s) for s in [node.left, *node.comparators]):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


#: Files outside this issue's reach that still compare METHOD.NAME with a name (to move to the registry).
NOT_YET_MIGRATED = {"iared_video/visualization/__init__.py"}


def test_no_module_outside_the_registry_matches_a_method_name() -> None:
    names = set(REGISTERED) | {get_method(n).label for n in REGISTERED}
    files = [p for p in (ROOT / "iared_video").rglob("*.py") if "methods" not in p.parts]
    files += list((ROOT / "tools").glob("*.py"))
    found = [hit for p in files if str(p.relative_to(ROOT)) not in NOT_YET_MIGRATED
             for hit in _method_name_comparisons(p, names)]
    assert not found, "\n".join(found)
