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
    rows = run_benchmark(cfg, settings, "cpu").rows
    assert rows[0]["variant"] == "dense" and len(rows) >= 2 - (name == "dense")
    dense = fvcore_gflops(build_model(cfg_of("dense")).eval(), torch.randn(1, 3, 2, 32, 32))  # the tiny backbone
    assert rows[0]["gmacs_per_sample"] == pytest.approx(dense, rel=2e-3)
    for row in rows[1:]:  # ideal speed-up: dense GMACs over the variant's
        assert row["policy"] == name and math.isfinite(row["speedup"]), row
        assert row["ideal_speedup"] == pytest.approx(dense / row["gmacs_per_sample"], rel=2e-3), row


def _named_methods(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``(line, value)`` of every string constant in ``source`` equal to one of ``names``: comparisons, list and
    tuple items, dict keys and values, dataclass field defaults, call arguments alike."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]


def _runtime_files() -> list[Path]:
    """The runtime: ``iared_video/`` without ``methods/`` (where names belong), ``experiments/`` (which may
    name methods, as the tools may) and ``config/defaults.py`` (the commented defaults)."""
    package = ROOT / "iared_video"
    return [p for p in sorted(package.rglob("*.py"))
            if p.relative_to(package).parts[0] not in ("methods", "experiments")
            and p != package / "config" / "defaults.py"]


def test_method_name_guard_sees_every_kind_of_string_constant() -> None:
    source = "\n".join([
        "from dataclasses import dataclass",
        "@dataclass",
        "class S:",
        "    methods: tuple = ('alpha',)",  # line 4: a dataclass field default
        "TABLE = {'beta': 1}",  # line 5: a dict key
        "ORDER = ['gamma', 'other']",  # line 6: a list item
        "def f(x):",
        "    return x == 'alpha' or g(x, key='beta')",  # line 8: a comparison and a call argument
    ])
    found = _named_methods(source, {"alpha", "beta", "gamma"})
    assert sorted(found) == [(4, "alpha"), (5, "beta"), (6, "gamma"), (8, "alpha"), (8, "beta")]


def test_no_runtime_module_outside_the_registry_names_a_method() -> None:
    """Names are read from the registry, so renamed methods are guarded under their new names."""
    names = set(method_names())
    found = [f"{p.relative_to(ROOT)}:{line}: {value!r}" for p in _runtime_files()
             for line, value in _named_methods(p.read_text(), names)]
    assert not found, "\n".join(found)
