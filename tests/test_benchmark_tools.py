"""Benchmark library and trade-off tools end to end on a tiny random model (outputs exist; no timing asserts)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from iared_video.engine.benchmark import BenchSettings, LiveTensorBytes, peak_memory_mb, run_benchmark
from iared_video.engine.benchmark import benchmark_table as format_table
from iared_video.methods import build_model, load_config
from iared_video.methods.iared import topk_per_sample
from iared_video.utils.pruning import count_linear_macs, magnitude_prune, prunable_linears
from iared_video.utils.results import save_json

TINY = ["MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "2", "DATA.NUM_FRAMES", "2",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "MODEL.NUM_CLASSES", "5",
        "IARED.NUM_GROUPS", "2", "IARED.INTERPRETER_DIM", "8"]
FAST = ["--batch-size", "2", "--num-batches", "1", "--iters", "1"]


def tool(name: str) -> ModuleType:
    """The experiment module behind ``tools/<name>.py``."""
    return importlib.import_module(f"iared_video.experiments.{name}")


def test_topk_per_sample_keeps_k_best_in_each_sample() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7])
    keep = topk_per_sample(scores, torch.tensor([3, 4]), torch.tensor([1, 2]))
    assert keep.tolist() == [False, True, False, False, True, False, True]


def test_live_tensor_bytes_peak_worked_by_hand() -> None:
    """4 MiB + 8 MiB live, free the 4, allocate 4 again: peak 12 MiB; views and in-place ops allocate nothing."""
    before = torch.zeros(1024, 1024)
    with LiveTensorBytes() as tracker:
        a = torch.zeros(1024, 1024)
        b = torch.zeros(2048, 1024)
        view = b[:10].t()
        before.add_(1.0)
        del a
        c = torch.zeros(1024, 1024)
        assert tracker.live == 12 * 2**20
        del b
        assert tracker.live == 12 * 2**20  # the view keeps b's storage alive
        del view
        assert tracker.live == 4 * 2**20
    assert tracker.peak == 12 * 2**20 and c.numel() == 2**20


def test_cpu_peak_memory_of_a_forward_covers_its_largest_activation() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    x = torch.randn(100, 64)
    with torch.inference_mode():
        mb, method = peak_memory_mb(lambda: mlp(x), torch.device("cpu"))
    hidden = 100 * 256 * 4  # fc1 and GELU outputs are alive together
    assert method == "live_tensor_peak" and 2 * hidden <= mb * 2**20 <= 2 * hidden + 100 * 64 * 4


def controlled_keep_by_hand(cfg, batch: int, keep: float, spread: float) -> float:
    """Mean final keep ratio of ``iared@keep``: one ratio at the centre of each of ``batch`` equal steps of
    [keep - spread, keep + spread] (their order does not change the mean), each sample keeping ``round(r N)``
    patch tokens (at least 1) after the last group."""
    size = cfg.DATA.TEST_CROP_SIZE
    num_patches = cfg.DATA.NUM_FRAMES * (size // cfg.MODEL.PATCH_SIZE) ** 2
    lo, hi = max(keep - spread, 0.01), min(keep + spread, 1.0)
    ratios = lo + (hi - lo) * (torch.arange(batch, dtype=torch.float64) + 0.5) / batch
    return float((ratios * num_patches).round().clamp_min(1).mean()) / num_patches


def test_run_benchmark_rows_have_ratios_and_ideal_speedups() -> None:
    cfg = load_config(None, TINY)
    settings = BenchSettings(batch_sizes=[1, 3], warmup=0, iters=2, thresholds=[0.5], keep_ratios=[0.5],
                             methods_at_keep=["drop_random", "drop_temporal_diff"])
    results = run_benchmark(cfg, settings, "cpu")
    rows = results.rows
    assert len(rows) == 2 * 5 and results.unit == "clips_per_s"
    for row in rows:
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal_speedup"])
        assert row["peak_mem_mb"] > 0 and row["mem_method"] == "live_tensor_peak" and row["clips_per_s"] > 0
    controlled = [r for r in rows if r["variant"].startswith("iared@keep")]
    dense = {(r["batch_size"], r["precision"]): r for r in rows if r["variant"] == "dense"}
    assert [r["batch_size"] for r in controlled] == [1, 3]
    for row in controlled:
        batch = row["batch_size"]
        assert row["keep_ratio"] == pytest.approx(controlled_keep_by_hand(cfg, batch, 0.5, settings.keep_spread))
        dense_gmacs = dense[batch, row["precision"]]["gmacs_per_sample"]
        assert row["ideal_speedup"] == pytest.approx(dense_gmacs / row["gmacs_per_sample"], rel=1e-12)
    assert "efficiency" in format_table(rows, results.unit)


def test_benchmark_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    tool("benchmark").main(["--batch-sizes", "2", "--warmup", "0", "--iters", "1", "--keep-ratios", "0.6",
                            "--precisions", "fp32", "bf16", "--out", str(out), *TINY])
    data = json.loads(out.read_text())
    assert {r["precision"] for r in data["rows"]} == {"fp32", "bf16"}


def test_deit_runs_at_384_with_interpolated_pos_embed() -> None:
    cfg = load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_tiny_patch16_224",
                             "IARED.NUM_GROUPS", "3", "DATA.TEST_CROP_SIZE", "384", "MODEL.NUM_CLASSES", "3"])
    out = build_model(cfg).eval()(torch.randn(1, 3, 384, 384), return_policy=True)
    assert out.keep[0].shape[1] == 24 * 24 and out.logits.shape == (1, 3)


def rows_per_layer(model: torch.nn.Module, linears: dict, x: torch.Tensor) -> dict[str, float]:
    """Token rows each linear layer sees in one forward of ``model`` (tokens the interpreters dropped excluded)."""
    rows: dict[str, float] = {}

    def record(name: str):
        return lambda mod, args, _out: rows.__setitem__(name, args[0].numel() / mod.in_features)

    hooks = [m.register_forward_hook(record(n)) for n, m in linears.items()]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return rows


def test_magnitude_pruning_and_nonzero_macs() -> None:
    model = build_model(load_config(None, TINY)).eval()
    layers = prunable_linears(model)
    assert all(not name.startswith("policy.") for name in layers)
    for scope in ("global", "layer"):
        fresh = build_model(load_config(None, TINY)).eval()
        linears = prunable_linears(fresh)
        sizes = {n: m.weight.numel() for n, m in linears.items()}
        stats = magnitude_prune(linears, 0.5, scope)
        zeros = {n: int((m.weight == 0).sum()) for n, m in linears.items()}
        # k = round(0.5 n) smallest magnitudes zeroed (random weights: no ties), over all layers or per layer
        if scope == "global":
            assert sum(zeros.values()) == round(0.5 * sum(sizes.values()))
        else:
            assert zeros == {n: round(0.5 * size) for n, size in sizes.items()}
        assert stats == pytest.approx({n: zeros[n] / sizes[n] for n in sizes})
        with count_linear_macs(linears) as totals:
            rows = rows_per_layer(fresh, linears, torch.randn(1, 3, 2, 32, 32))
        assert totals["macs"] == pytest.approx(sum(rows[n] * (sizes[n] - zeros[n]) for n in sizes), rel=1e-12)
        assert totals["dense_macs"] == pytest.approx(sum(rows[n] * sizes[n] for n in sizes), rel=1e-12)


def test_tradeoff_tools_write_tables_json_and_plots(tmp_path: Path) -> None:
    tool("sweep_threshold").main([*FAST, "--thresholds", "0.3", "0.5", "0.7", "--out-dir", str(tmp_path / "t"), *TINY])
    tool("sweep_groups").main([*FAST, "--groups", "1", "2", "4", "--target-gmacs", "0.001",
                               "--out-dir", str(tmp_path / "g"), *TINY])
    tool("prune_linear").main([*FAST, "--sparsities", "0", "0.5", "--out-dir", str(tmp_path / "p"), *TINY])
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "test_results.json").write_text(json.dumps(
        {"top1_err": 40.0, "gmacs_per_view": 0.01, "clips_per_s": 3.0, "policy": "iared"}))
    points = tool("pareto").main([str(tmp_path)])
    for path in ("t/sweep_threshold.png", "t/sweep_threshold.json", "g/sweep_groups.png", "p/prune_linear.png",
                 "pareto_gmacs.png", "pareto_throughput.png", "pareto.json"):
        assert (tmp_path / path).stat().st_size > 0, path
    groups = json.loads((tmp_path / "g/sweep_groups.json").read_text())["rows"]
    assert [r["groups"] for r in groups] == [1, 2, 4]
    assert any(p["accuracy"] == 60.0 for p in points)


def test_benchmark_inputs_from_a_real_split(tmp_path: Path) -> None:
    """Real decoded clips (keep counts vary as in use): batches carry inputs and labels, invalid views dropped."""
    from iared_video.engine.benchmark import data_input
    from iared_video.experiments.tradeoff import eval_batches
    from iared_video.synthetic import generate_video_dataset

    meta = generate_video_dataset(str(tmp_path), num_videos=12, seed=0, num_classes=2)
    num_val = sum(v["split"] == "val" for v in meta["videos"])
    cfg = load_config(None, TINY + ["MODEL.NUM_CLASSES", "2", "DATA.PATH_TO_DATA_DIR", str(tmp_path),
                                    "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA_LOADER.NUM_WORKERS", "0",
                                    "TEST.NUM_SPATIAL_CROPS", "1"])
    inputs, labels = eval_batches(cfg, "val", num_batches=1, batch=num_val)[0]
    assert inputs.shape == (num_val, 3, 2, 32, 32)
    assert sorted(labels.tolist()) == sorted(v["label"] for v in meta["videos"] if v["split"] == "val")
    x = data_input(cfg, "val", batch=num_val + 1)  # one more than the split holds: repeated from the start
    assert x.shape == (num_val + 1, 3, 2, 32, 32) and torch.equal(x[num_val], x[0])


def test_benchmark_variants_run_the_test_checkpoint_over_the_pretrained_weights(tmp_path: Path) -> None:
    """TEST.CHECKPOINT_FILE_PATH (a trained IA-RED^2 model) is what the variants run, loaded over
    MODEL.PRETRAINED: every tensor of the threshold variant equals the test checkpoint's."""
    from iared_video.engine.benchmark import build_variants
    from iared_video.engine.checkpoint import save_checkpoint

    cfg = load_config(None, TINY)
    paths = {}
    for name, seed in (("pretrained", 1), ("trained", 2)):
        torch.manual_seed(seed)
        model = build_model(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        paths[name] = str(tmp_path / f"{name}.pyth")
        save_checkpoint(paths[name], {"model_state": model.state_dict()})
    trained = torch.load(paths["trained"], weights_only=True)["model_state"]
    settings = BenchSettings(batch_sizes=[1], warmup=0, iters=1, thresholds=[0.5], keep_ratios=[])
    cfg = load_config(None, [*TINY, "MODEL.PRETRAINED", paths["pretrained"],
                             "TEST.CHECKPOINT_FILE_PATH", paths["trained"]])
    variants = build_variants(cfg, settings, torch.device("cpu"))
    threshold = next(v for v in variants if v.name.startswith("iared@t="))
    state = threshold.model.state_dict()
    assert set(state) == set(trained)
    for key, value in trained.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_gmacs_budget_sets_every_method_to_the_budget_or_its_floor() -> None:
    """Each budget row costs the budget (within 5%, the matching tolerance; a token is 1/64 of the patches
    here) on the timed batch, or sits at its floor: its cheapest setting and still dearer. ToMe, EViT and
    DynamicViT are searched over their own knob's range, so ToMe reaches r beyond a 0.01 keep target's."""
    cfg = load_config(None, TINY + ["DATA.TEST_CROP_SIZE", "64", "DATA.TRAIN_CROP_SIZE", "64"])
    budget = 0.5
    settings = BenchSettings(batch_sizes=[1], warmup=0, iters=1, keep_ratios=[], methods=["dense", "iared"],
                             methods_at_keep=["drop_random", "drop_attention", "tome", "evit", "dynamicvit"],
                             gmacs_budgets=[budget], measure_memory=False)
    rows = run_benchmark(cfg, settings, "cpu").rows
    dense = rows[0]["gmacs_per_sample"]
    budget_rows = {r["variant"]: r for r in rows if "@gmacs=" in r["variant"]}
    assert sorted(budget_rows) == sorted(f"{m}@gmacs=0.5x" for m in
                                         ["iared", "random", "attention", "tome", "evit", "dynamicvit"])
    for name, row in budget_rows.items():
        ratio = row["gmacs_per_sample"] / dense
        at_floor = row["info"]["at_floor"] and ratio > budget
        assert abs(ratio - budget) <= 0.05 * budget or at_floor, (name, ratio)
    assert budget_rows["tome@gmacs=0.5x"]["info"]["knob"] == "TOME.R"
    assert "keep_target" in budget_rows["random@gmacs=0.5x"]["info"]


def test_configured_peers_are_timed_at_their_settings() -> None:
    cfg = load_config(None, TINY + ["TOME.R", "2", "EVIT.KEEP_RATE", "0.6", "DYNAMICVIT.KEEP_RATE", "0.8"])
    settings = BenchSettings(batch_sizes=[2], warmup=0, iters=1, keep_ratios=[],
                             methods=["dense", "tome", "evit", "dynamicvit"], measure_memory=False)
    rows = {r["variant"]: r for r in run_benchmark(cfg, settings, "cpu").rows}
    assert set(rows) == {"dense", "tome@r=2", "evit@rate=0.6", "dynamicvit@rho=0.8"}
    assert rows["tome@r=2"]["keep_ratio"] < 1.0 and rows["evit@rate=0.6"]["keep_ratio"] < 1.0


def test_suite_report_reads_the_preset_jsons(tmp_path: Path) -> None:
    from iared_video.experiments.benchmark import suite_rows, write_report

    cfg = load_config(None, TINY)
    settings = BenchSettings(batch_sizes=[1, 2], warmup=0, iters=1, keep_ratios=[], methods=["dense", "iared"],
                             methods_at_keep=["drop_random"], gmacs_budgets=[0.6], measure_memory=False)
    save_json(run_benchmark(cfg, settings, "cpu"), str(tmp_path / "main_video.json"))
    rows = suite_rows(str(tmp_path))
    assert [(r["batch_size"], r["variant"]) for r in rows] == [
        (b, v) for b in (1, 2) for v in ("dense", "iared@gmacs=0.6x", "random@gmacs=0.6x")]
    for r in rows:
        assert r["preset"] == "main_video" and r["efficiency"] == pytest.approx(r["speedup"] / r["ideal_speedup"])
        assert r["gmacs_ratio"] == pytest.approx(1.0 / r["ideal_speedup"])
    write_report(rows, str(tmp_path / "report.md"))
    text = (tmp_path / "report.md").read_text()
    assert text.count("| 2 | random@gmacs=0.6x |") == 1 and (tmp_path / "report.png").stat().st_size > 10_000
