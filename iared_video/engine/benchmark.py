"""Throughput benchmark: dense vs IA-RED^2 vs the other methods, measured against the GMACs limit.

Every variant shares one backbone (same weights) and is timed interleaved with
the others (iteration ``i`` times every variant once), so machine noise hits all
variants alike; speed-ups are reported as the ratio of medians and as the
median of per-iteration (paired) ratios. Next to each speed-up: the ideal
speed-up from GMACs on the actual keep masks (policy cost included, see
``iared_video.models.flops``) and the efficiency ``measured / ideal``.

Each method declares its variants (``Method.benchmark_variants`` in ``iared_video/methods/``). Controlled
keep: an untrained interpreter cannot be steered by its threshold, so ``ControlledKeepPolicy`` runs the
real interpreters (same cost) and keeps the top-scored tokens of each sample, per-sample keep ratios spread
evenly over ``[r - spread, r + spread]`` in shuffled order (the batch's mean is r unless that range is
clipped to [0.01, 1]); the other methods are set to the keep target by their own knob. With GMACs
budgets, every method's knob (or keep target) is found by bisection so that it costs the budget
(``budget_variant``).

This is the harness of the ``BENCHMARK.ENABLE`` stage of ``tools/run_net.py`` (part of the runtime);
``tools/benchmark.py``'s presets and the trade-off studies built on it live in the experiments package.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, cast

import torch
from fvcore.common.config import CfgNode
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from iared_video.config import device_of, is_video, resolve_device
from iared_video.config.choices import CPU_LINEARS
from iared_video.config.choices import PRECISIONS as PRECISION_NAMES
from iared_video.config.defaults import get_defaults
from iared_video.methods import get_method, model_gmacs_per_sample, registered_methods
from iared_video.methods.base import BenchContext, Method, Variant
from iared_video.models.build import build_backbone
from iared_video.models.flops import dense_gmacs
from iared_video.models.onednn import use_onednn_linears
from iared_video.models.policies import NoDropPolicy
from iared_video.models.policy_model import PolicyModel
from iared_video.models.weights import load_pretrained
from iared_video.utils.results import BenchmarkResults, format_table, save_json

__all__ = ["Variant", "BenchSettings", "build_variants", "time_interleaved", "summarize_times", "peak_memory_mb",
           "LiveTensorBytes", "make_input", "data_input", "split_batches", "run_benchmark", "run_benchmark_from_cfg",
           "benchmark_table", "autocast_context", "keep_target_methods"]

logger = logging.getLogger(__name__)

#: Autocast dtype of each precision name of ``config.choices.PRECISIONS`` (None: no autocast, fp32).
PRECISIONS = {name: {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name) for name in PRECISION_NAMES}


def keep_target_methods() -> list[str]:
    """Methods with a benchmark variant at a keep target besides IA-RED^2's controlled keep."""
    return [m.name for m in registered_methods() if m.knob is not None]


_DEFAULTS = get_defaults()


@dataclass
class BenchSettings:
    """What to run; see ``tools/benchmark.py --help`` for the meaning of each field.

    ``methods`` are timed as configured and at each keep target (empty: the registry's ``Method.benchmarked``
    methods, dense and IA-RED^2 by threshold and by controlled keep); ``methods_at_keep`` (any of
    ``keep_target_methods()``) at each keep target only. ``gmacs_budgets`` (fractions of the dense model's
    GMACs): the same methods again, each set so that it costs the budget (``budget_variant``). The defaults
    are the ``BENCHMARK`` section's.
    """

    batch_sizes: Sequence[int] = tuple(_DEFAULTS.BENCHMARK.BATCH_SIZES)
    precisions: Sequence[str] = tuple(_DEFAULTS.BENCHMARK.PRECISIONS)
    warmup: int = _DEFAULTS.BENCHMARK.WARMUP_ITERS
    iters: int = _DEFAULTS.BENCHMARK.NUM_ITERS
    thresholds: Sequence[float] = tuple(_DEFAULTS.BENCHMARK.THRESHOLDS)
    keep_ratios: Sequence[float] = tuple(_DEFAULTS.BENCHMARK.KEEP_RATIOS)
    keep_spread: float = _DEFAULTS.BENCHMARK.KEEP_SPREAD
    keep_schedule: str = _DEFAULTS.BENCHMARK.KEEP_SCHEDULE
    methods_at_keep: Sequence[str] = tuple(_DEFAULTS.BENCHMARK.METHODS_AT_KEEP)
    data_split: str = _DEFAULTS.BENCHMARK.DATA_SPLIT
    seed: int = _DEFAULTS.RNG_SEED
    measure_memory: bool = True
    cpu_linear: str = _DEFAULTS.BENCHMARK.CPU_LINEAR
    methods: Sequence[str] = ()
    gmacs_budgets: Sequence[float] = ()


def build_variants(cfg: CfgNode, settings: BenchSettings, device: torch.device) -> list[Variant]:
    """Every method's benchmark variants (``Method.benchmark_variants``) on one backbone: ``settings.methods``
    as configured, then at each keep target ``settings.methods`` and ``settings.methods_at_keep``."""
    bench = BenchContext(cfg, settings, build_backbone(cfg))
    methods = [get_method(name) for name in settings.methods] or [m for m in registered_methods() if m.benchmarked]
    at_keep = list({m.name: m for m in methods + [get_method(n) for n in settings.methods_at_keep]}.values())
    unfit = {m.name: m.requirement_errors(cfg) for m in at_keep}  # every method of ``methods`` is in at_keep
    for name, errors in unfit.items():
        if errors:
            logger.info("benchmark: %s left out: %s", name, "; ".join(errors))
    at_keep, methods = ([m for m in group if not unfit[m.name]] for group in (at_keep, methods))
    variants = [v for m in methods for v in m.benchmark_variants(bench, None)]
    for r in settings.keep_ratios:
        variants += [v for m in at_keep for v in m.benchmark_variants(bench, float(r))]
    if settings.gmacs_budgets:
        probe = make_input(cfg, 1, torch.Generator().manual_seed(settings.seed))
        reference = PolicyModel(bench.backbone, NoDropPolicy(), 1).eval()  # every token: the dense cost
        dense = _gmacs_and_keep(Variant("reference", reference, NoDropPolicy.__name__), probe, "fp32")[0]
        for budget in settings.gmacs_budgets:
            variants += [budget_variant(m, bench, float(budget), probe, dense) for m in at_keep
                         if m.benchmark_variants(bench, 1.0)]  # the methods with a keep-target variant
    if not bench.shared:  # no method loaded the weights with its own modules
        for path in bench.weights:
            load_pretrained(PolicyModel(bench.backbone, NoDropPolicy(), 1), path)
    for v in variants:
        v.model.to(device).eval()
    return variants


def _search(make: Callable[[float], Variant], lo: float, hi: float, rises: bool, integer: bool, target: float,
            probe: Tensor, tol: float = 0.005, steps: int = 14) -> tuple[float, float, bool]:
    """``(setting, GMACs, at_floor)``: bisection over a setting in ``[lo, hi]`` (cost rising with it if
    ``rises``) for ``make(setting)`` to cost ``target`` GMACs per sample on ``probe``; stopped within ``tol``,
    at adjacent integers, or after ``steps`` halvings at the closer end. ``at_floor``: even the cheapest
    setting costs more than the target."""

    def cost(value: float) -> float:
        v = make(value)
        v.model.eval()
        v.setup(probe.shape[0], torch.Generator().manual_seed(0))
        return _gmacs_and_keep(v, probe, "fp32")[0]

    cheap, dear = (lo, hi) if rises else (hi, lo)
    c_cheap, c_dear = cost(cheap), cost(dear)
    if c_cheap >= target or c_dear <= target:
        return (cheap, c_cheap, c_cheap > target) if c_cheap >= target else (dear, c_dear, False)
    for _ in range(steps):
        mid = round((cheap + dear) / 2) if integer else (cheap + dear) / 2
        if mid in (cheap, dear):
            break
        c_mid = cost(mid)
        if abs(c_mid - target) <= tol * target:
            return mid, c_mid, False
        cheap, c_cheap, dear, c_dear = (mid, c_mid, dear, c_dear) if c_mid < target else (cheap, c_cheap, mid, c_mid)
    return (cheap, c_cheap, False) if target - c_cheap <= c_dear - target else (dear, c_dear, False)


def budget_variant(method: Method, bench: BenchContext, budget: float, probe: Tensor, dense: float) -> Variant:
    """``method`` set to cost ``budget`` x ``dense`` GMACs per sample on ``probe``, named
    ``label@gmacs=<budget>x``. A method with a cost knob and a configured variant (ToMe's r, EViT's keep rate,
    DynamicViT's rho) is searched over its knob's whole range (``Method.knob``); the others (IA-RED^2's
    controlled keep, the fixed-ratio drops) over the keep target in [0.01, 1]. A method that cannot go as low
    comes back at its cheapest setting (``info["at_floor"]``)."""
    knob, target = method.knob, budget * dense
    if knob is not None and method.benchmark_variants(bench, None):
        def make(value: float) -> Variant:
            node = bench.cfg.clone()
            node.defrost()
            node.merge_from_list([knob.key, int(value) if knob.integer else float(value), *knob.with_opts])
            return method.benchmark_variants(dataclasses.replace(bench, cfg=node), None)[0]

        value, gmacs, floor = _search(make, knob.low, knob.high, knob.cost_rises, knob.integer, target, probe)
        v, setting = make(value), {"knob": knob.key, "value": value}
    else:
        value, gmacs, floor = _search(lambda k: method.benchmark_variants(bench, k)[0], 0.01, 1.0, True, False,
                                      target, probe)
        v, setting = method.benchmark_variants(bench, value)[0], {"keep_target": value}
    logger.info("budget %.3gx: %s at %s costs %.4f GMACs (%.3fx dense%s)", budget, method.label, setting, gmacs,
                gmacs / dense, ", its floor" if floor else "")
    v.name = f"{method.label}@gmacs={budget:g}x"
    v.info = {**v.info, **setting, "gmacs_budget": budget, "at_floor": floor}
    return v


def _onednn_variants(variants: list[Variant]) -> list[Variant]:
    """Every variant's linear layers on oneDNN, plus an aten-linear copy of dense for reference.

    Ratios stay relative to the first variant, now the *oneDNN* dense model: like against like.
    """
    aten = copy.deepcopy(variants[0].model)  # dense: the shared backbone with every token kept
    for v in variants:
        use_onednn_linears(v.model)
    return variants + [Variant(f"{variants[0].name} (aten linear)", aten, variants[0].policy)]


def autocast_context(precision: str, device: torch.device):
    """Autocast for ``"bf16"``/``"fp16"`` (CPU autocast supports bf16), nothing for ``"fp32"``."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def make_input(cfg: CfgNode, batch: int, gen: torch.Generator) -> Tensor:
    """Generated input of ``cfg``'s test shape: clips ``(B, C, T, S, S)`` or images ``(B, C, S, S)``."""
    size, chans = cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM
    shape = (batch, chans, cfg.DATA.NUM_FRAMES, size, size) if is_video(cfg) \
        else (batch, chans, size, size)
    return torch.randn(shape, generator=gen)


def data_input(cfg: CfgNode, split: str, batch: int) -> Tensor:
    """The first ``batch`` inputs of ``split`` (real data: keep counts vary as in use)."""
    chunks, have = [], 0
    for inputs, _ in split_batches(cfg, split, batch):
        chunks.append(inputs)
        have += inputs.shape[0]
        if have >= batch:
            break
    if not chunks:
        raise ValueError(f"split {split!r} is empty")
    x = torch.cat(chunks)[:batch]
    if x.shape[0] < batch:
        logger.warning("split %s has only %d samples; batch %d repeats them", split, x.shape[0], batch)
        x = x.repeat(math.ceil(batch / x.shape[0]), *([1] * (x.ndim - 1)))[:batch]
    return x


def split_batches(cfg: CfgNode, split: str, batch: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, labels)`` of ``split`` in loader batches of ``batch``, unreadable (invalid) views left out."""
    from iared_video.datasets import construct_loader

    node = cfg.clone()
    node.defrost()
    node.TEST.BATCH_SIZE = batch
    for item in construct_loader(node, split):
        valid = item["valid"]
        yield item["inputs"][valid], item["label"][valid]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(variants: Sequence[Variant], x: Tensor, precision: str, warmup: int,
                     iters: int) -> dict[str, list[float]]:
    """Seconds per forward of each variant, iteration-interleaved (variant order rotates each iteration)."""
    device = x.device
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    with torch.inference_mode(), autocast_context(precision, device):
        for it in range(warmup + iters):
            shift = it % len(variants)
            for v in list(variants[shift:]) + list(variants[:shift]):
                _sync(device)
                start = time.perf_counter()
                v.model(x)
                _sync(device)
                if it >= warmup:
                    times[v.name].append(time.perf_counter() - start)
    return times


def summarize_times(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of timings (seconds)."""
    s = sorted(seconds)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0], s[0], s[0]]
    return {"median_s": statistics.median(s), "q1_s": q[0], "q3_s": q[2], "min_s": s[0], "max_s": s[-1]}


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages allocated by ops inside the mode and still alive, and their peak.

    A storage counts once however many views share it; outputs that reuse an input's storage (views,
    in-place ops) allocate nothing. Only storages that a Python-visible op returns are seen (an op's
    internal scratch buffers are not), so on CPU this is the peak of live activations, not of the process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._storages: dict[Any, list[int]] = {}  # storage key -> [nbytes, live tensors on it]

    def _release(self, key: Any) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, Tensor):
                continue
            key = _storage_key(t)
            entry = self._storages.get(key)
            if entry is None and (key == 0 or key in inputs):
                continue  # empty, or a view of / in-place on memory allocated before the mode
            if entry is None:
                nbytes = t.numel() * t.element_size() if t.is_mkldnn else t.untyped_storage().nbytes()
                entry = self._storages[key] = [nbytes, 0]
                self.live += entry[0]
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


def _storage_key(t: Tensor) -> int | tuple[str, int]:
    """A storage's data pointer; opaque (oneDNN) tensors have no accessible storage and count per tensor."""
    return ("opaque", id(t)) if t.is_mkldnn else t.untyped_storage().data_ptr()


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> tuple[float, str]:
    """Peak memory of one call of ``fn`` above the memory held before it (MiB), and the method used.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the call. CPU: the peak of live
    tensor storages allocated during the call (:class:`LiveTensorBytes`); the process's RSS is no use
    here because the allocator reuses freed memory, so its growth says little about one forward.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_max_memory_allocated"
    tracker = LiveTensorBytes()
    with tracker:
        fn()
    return tracker.peak / 2**20, "live_tensor_peak"


def _gmacs_and_keep(v: Variant, x: Tensor, precision: str) -> tuple[float, float]:
    """Mean GMACs per sample on the actual keep masks and mean final keep ratio."""
    with torch.inference_mode(), autocast_context(precision, x.device):
        out = v.model(x, return_policy=True)
    if isinstance(v.model.policy, NoDropPolicy):
        num = out.keep[0].shape[1]
        return dense_gmacs(cast(PolicyModel, v.model), num), 1.0
    return float(model_gmacs_per_sample(v.model, out).mean()), float(out.keep_ratio.mean())


def _bench_one(variants: list[Variant], x: Tensor, precision: str, settings: BenchSettings, unit: str,
               gen: torch.Generator) -> list[dict]:
    """Rows for one (batch size, precision): timings, GMACs, memory and ratios to dense."""
    batch = x.shape[0]
    for v in variants:
        v.setup(batch, gen)
    cost = {v.name: _gmacs_and_keep(v, x, precision) for v in variants}
    times = time_interleaved(variants, x, precision, settings.warmup, settings.iters)
    dense = variants[0].name
    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.name, "policy": v.policy, "keep_target": v.keep_target,
                               "threshold": v.threshold, "batch_size": batch, "precision": precision,
                               "info": v.info, **summarize_times(times[v.name])}
        row[unit] = batch / row["median_s"]
        row["gmacs_per_sample"], row["keep_ratio"] = cost[v.name]
        row.update(_ratios(times[dense], times[v.name], cost[dense][0], cost[v.name][0]))
        if settings.measure_memory:
            row["peak_mem_mb"], row["mem_method"] = _memory(v, x, precision)
        rows.append(row)
    return rows


def _memory(v: Variant, x: Tensor, precision: str) -> tuple[float, str]:
    def call() -> None:
        with torch.inference_mode(), autocast_context(precision, x.device):
            v.model(x)

    mb, method = peak_memory_mb(call, x.device)
    return float(mb), method


def _ratios(dense: Sequence[float], mine: Sequence[float], dense_gmacs_: float, my_gmacs: float) -> dict[str, float]:
    """Speed-up (ratio of medians and paired median with IQR), ideal speed-up from GMACs, efficiency."""
    paired = [d / m for d, m in zip(dense, mine)]
    q = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    speedup = statistics.median(dense) / statistics.median(mine)
    ideal = dense_gmacs_ / my_gmacs
    return {"speedup": speedup, "speedup_paired_median": statistics.median(paired), "speedup_q1": q[0],
            "speedup_q3": q[2], "ideal_speedup": ideal, "efficiency": speedup / ideal}


def run_benchmark(cfg: CfgNode, settings: BenchSettings, device: torch.device | str | None = None) -> BenchmarkResults:
    """Benchmark every variant of ``cfg`` at every batch size and precision.

    Args:
        cfg: the model config (``MODEL`` and ``DATA`` are read here; the methods read their own sections).
        settings: batch sizes, precisions, variants, input mode, iteration counts.
        device: where to run (default: ``resolve_device("auto")``, the GPU when there is one).
    """
    device = torch.device(device) if device else resolve_device("auto")
    torch.manual_seed(settings.seed)
    if settings.cpu_linear not in CPU_LINEARS:
        raise ValueError(f"cpu_linear must be {' or '.join(map(repr, CPU_LINEARS))}, got {settings.cpu_linear!r}")
    if settings.cpu_linear == "onednn" and (device.type != "cpu" or list(settings.precisions) != ["fp32"]):
        raise ValueError(f"cpu_linear 'onednn' is for fp32 on CPU; got device {device}, "
                         f"precisions {list(settings.precisions)}")
    variants = build_variants(cfg, settings, device)
    if settings.cpu_linear == "onednn":
        variants = _onednn_variants(variants)
    unit = "clips_per_s" if is_video(cfg) else "images_per_s"
    rows: list[dict] = []
    for batch in settings.batch_sizes:
        gen = torch.Generator().manual_seed(settings.seed + batch)
        x = data_input(cfg, settings.data_split, batch) if settings.data_split else make_input(cfg, batch, gen)
        x = x.to(device)
        for precision in settings.precisions:
            logger.info("benchmark: batch %d, %s, %d variants", batch, precision, len(variants))
            rows.extend(_bench_one(variants, x, precision, settings, unit, gen))
    groups = getattr(variants[0].model, "num_groups", 1)
    model = {"name": cfg.MODEL.MODEL_NAME, "arch": cfg.MODEL.ARCH, "groups": groups, "crop": cfg.DATA.TEST_CROP_SIZE,
             "frames": cfg.DATA.NUM_FRAMES}
    return BenchmarkResults(rows, unit, _environment(device), vars(settings).copy(), model)


def _environment(device: torch.device) -> dict[str, Any]:
    env = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def settings_from_cfg(cfg: CfgNode) -> BenchSettings:
    """``BenchSettings`` from the ``BENCHMARK`` section."""
    b = cfg.BENCHMARK
    return BenchSettings(batch_sizes=list(b.BATCH_SIZES), precisions=list(b.PRECISIONS), warmup=b.WARMUP_ITERS,
                         iters=b.NUM_ITERS, thresholds=list(b.THRESHOLDS), keep_ratios=list(b.KEEP_RATIOS),
                         keep_spread=b.KEEP_SPREAD, keep_schedule=b.KEEP_SCHEDULE,
                         methods_at_keep=list(b.METHODS_AT_KEEP), data_split=b.DATA_SPLIT, seed=cfg.RNG_SEED,
                         cpu_linear=b.CPU_LINEAR, gmacs_budgets=list(b.GMACS_BUDGETS))


def run_benchmark_from_cfg(cfg: CfgNode) -> BenchmarkResults:
    """``BENCHMARK.ENABLE`` stage: run, log the table, write ``OUTPUT_DIR/benchmark.json``."""
    results = run_benchmark(cfg, settings_from_cfg(cfg), device_of(cfg))
    logger.info("benchmark results\n%s", benchmark_table(results.rows, results.unit))
    save_json(results, os.path.join(cfg.OUTPUT_DIR, "benchmark.json"))
    return results


TABLE_COLUMNS = ("variant", "batch_size", "precision", "median_s", "q1_s", "q3_s", "keep_ratio",
                 "gmacs_per_sample", "speedup", "speedup_q1", "speedup_q3", "ideal_speedup", "efficiency",
                 "peak_mem_mb")


def benchmark_table(rows: Sequence[dict], unit: str | None = None) -> str:
    """The benchmark's rows as a text table (``TABLE_COLUMNS``, the throughput ``unit`` after the quartiles)."""
    cols = list(TABLE_COLUMNS)
    if unit and unit not in cols:
        cols.insert(4, unit)
    return format_table(rows, cols)
