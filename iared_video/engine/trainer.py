"""One trainer for video and image models and every method of ``iared_video.methods``.

``train(cfg, info)`` runs every stage of the selected method's schedule (``Method.stages``) in order,
checkpointing each epoch (and every ``TRAIN.CHECKPOINT_ITER_PERIOD`` iterations) and resuming from the
newest valid checkpoint. What differs between methods (the step's loss, the optimiser's parameter groups,
frozen parameters, a distillation teacher) is asked of the method; the trainer matches no method name.
The step functions take plain arguments; the cfg is read only in ``train`` and its helpers.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import iared_video.engine.checkpoint as ckpt
import iared_video.engine.distributed as du
from iared_video.config import device_of
from iared_video.config.choices import AMP_DTYPES
from iared_video.datasets import construct_loader, shuffle_dataset
from iared_video.engine.logging import get_logger, log_json_stats
from iared_video.engine.meters import TrainMeter, ValMeter
from iared_video.methods import build_model, method_for_cfg, stages_of
from iared_video.methods.stages import Stage, eval_modes, train_modes
from iared_video.methods.steps import StepArgs
from iared_video.methods.steps import autocast as _autocast
from iared_video.methods.steps import keep_ratios as _keep_ratios
from iared_video.models.optim import LRSchedule
from iared_video.models.weights import load_pretrained
from iared_video.utils.results import ValResults

__all__ = ["train", "train_epoch", "eval_epoch", "seed_everything", "build_initial_model", "LoaderFn"]

logger = get_logger(__name__)
LoaderFn = Callable[[CfgNode, str], Iterable[dict]]


@dataclass
class StageRun:
    """What one stage trains with."""

    stage: Stage
    index: int
    model: nn.Module  # the PolicyModel (unwrapped)
    net: nn.Module  # what the forward goes through (DDP-wrapped when distributed)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    modes: list[str]
    global_epoch_offset: int


# ----------------------------------------------------------------------------- setup helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_initial_model(cfg: CfgNode, device: torch.device) -> nn.Module:
    """Build the model with the same seed on every rank (``build_model`` loads ``MODEL.PRETRAINED``, the initial
    weights), then load ``TRAIN.CHECKPOINT_FILE_PATH`` (the dense model training starts from) over it."""
    seed_everything(cfg.RNG_SEED)
    model = build_model(cfg)
    start = cfg.TRAIN.CHECKPOINT_FILE_PATH
    if not start:
        return model.to(device)
    if cfg.MODEL.PRETRAINED:
        logger.warning("MODEL.PRETRAINED %s is overwritten by TRAIN.CHECKPOINT_FILE_PATH %s wherever both hold a "
                       "tensor", cfg.MODEL.PRETRAINED, start)
    try:
        load_pretrained(model, start)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"TRAIN.CHECKPOINT_FILE_PATH {start} (the dense model training starts from) does "
                                "not exist; pass your dense checkpoint, or TRAIN.CHECKPOINT_FILE_PATH '' to start from "
                                "MODEL.PRETRAINED alone") from exc
    return model.to(device)


def accumulation_steps(global_batch: int, batch_size: int, world_size: int) -> int:
    """Gradient-accumulation steps that make ``global_batch`` (0: no accumulation)."""
    per_step = batch_size * world_size
    if global_batch <= 0:
        return 1
    if global_batch % per_step:
        raise ValueError(f"TRAIN.GLOBAL_BATCH_SIZE {global_batch} is not a multiple of TRAIN.BATCH_SIZE x "
                         f"processes = {per_step}")
    return global_batch // per_step


def amp_dtype_of(cfg: CfgNode, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (GPU with TRAIN.MIXED_PRECISION only); the ``AMP_DTYPES`` names are torch's dtype names."""
    if cfg.TRAIN.AMP_DTYPE not in AMP_DTYPES:
        raise ValueError(f"TRAIN.AMP_DTYPE must be one of {list(AMP_DTYPES)}, got {cfg.TRAIN.AMP_DTYPE!r}")
    if not cfg.TRAIN.MIXED_PRECISION or device.type != "cuda":
        return None
    return getattr(torch, cfg.TRAIN.AMP_DTYPE)


# ----------------------------------------------------------------------------- steps


def _check_finite(loss: Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at {where}; stopping")


def _optimizer_step(run: StageRun, clip_grad: float) -> None:
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.scaler.unscale_(run.optimizer)
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.schedule.step()


# ----------------------------------------------------------------------------- data


def epoch_batches(loader: Iterable[dict], epoch: int, start_iter: int) -> Iterable[dict]:
    """The batches of epoch ``epoch`` from iteration ``start_iter`` on, in the same order as an unbroken run.

    For a ``DataLoader`` the order is fixed first (``shuffle_dataset`` then the batch sampler), and a loader
    over the remaining index batches is returned, so resuming mid-epoch skips without decoding anything.
    """
    if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
        it = iter(loader)
        for _ in range(start_iter):
            next(it)
        return it
    shuffle_dataset(loader, epoch)
    batches = list(loader.batch_sampler)[start_iter:]
    return DataLoader(loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, generator=loader.generator)


def _to_device(batch: dict, device: torch.device) -> tuple[Tensor, Tensor]:
    return batch["inputs"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)


def _batch_count(batch: dict, key: str) -> int:
    """Samples of ``batch`` flagged ``key`` (or the sum of its counts); 0 when the batch has no such field."""
    flag = batch.get(key)
    return int(torch.as_tensor(flag).sum()) if flag is not None else 0


# ----------------------------------------------------------------------------- epochs


def _payload(run: StageRun, epoch: int, iteration: int, epoch_done: bool, cfg_dump: str,
             stage_names: list[str]) -> dict[str, Any]:
    return {
        "model_state": run.model.state_dict(), "optimizer_state": run.optimizer.state_dict(),
        "scheduler_state": run.schedule.state_dict(), "scaler_state": run.scaler.state_dict(),
        "stage": run.index, "stage_name": run.stage.name, "stages": stage_names, "epoch": epoch,
        "iteration": iteration, "epoch_done": epoch_done, "global_epoch": run.global_epoch_offset + epoch,
        "rng": ckpt.rng_state(), "cfg": cfg_dump,
    }


@dataclass
class EpochContext:
    """Everything ``train_epoch`` needs besides the stage run."""

    args: StepArgs
    log_period: int = 10
    checkpoint_iter_period: int = 0
    output_dir: str = ""
    cfg_dump: str = ""
    stage_names: tuple[str, ...] = ()
    device: torch.device = torch.device("cpu")
    teacher: nn.Module | None = None  # a frozen copy of the initial model (DynamicViT distillation)
    method: Any = None  # the ``Method`` being trained (its ``step``)


def _step(run: StageRun, batch: dict, ctx: EpochContext) -> tuple[Tensor, dict]:
    x, y = _to_device(batch, ctx.device)
    return ctx.method.step(run, x, y, ctx)


def _log_iter(run: StageRun, epoch: int, it: int, total: int, stats: dict, extra: dict) -> None:
    log_json_stats({"_type": "train_iter", "stage": run.stage.name, "epoch": f"{epoch + 1}/{run.stage.epochs}",
                    "global_epoch": run.global_epoch_offset + epoch + 1, "iter": f"{it + 1}/{total}", **stats,
                    **extra})


def train_epoch(run: StageRun, loader: Iterable[dict], epoch: int, start_iter: int, ctx: EpochContext) -> dict:
    """Train ``run`` for one epoch from iteration ``start_iter``; returns the epoch's mean statistics."""
    run.model.train(ctx.method.model_in_train_mode(run.stage))
    meter, accum = TrainMeter(), ctx.args.accum_steps
    total = len(cast(Sized, loader)) if hasattr(loader, "__len__") else 0
    batches = epoch_batches(loader, run.global_epoch_offset + epoch, start_iter)
    bar = tqdm(batches, total=max(total - start_iter, 0), disable=not du.is_master(), dynamic_ncols=True,
               desc=f"{run.stage.name} ep {epoch + 1}/{run.stage.epochs}", initial=0)
    tic = time.perf_counter()
    for it, batch in enumerate(bar, start=start_iter):
        data_time = time.perf_counter() - tic
        sync = (it + 1) % accum == 0 or it + 1 == total
        ddp = isinstance(run.net, DistributedDataParallel)
        no_sync = cast(DistributedDataParallel, run.net).no_sync if ddp and not sync else contextlib.nullcontext
        with no_sync():
            loss, stats = _step(run, batch, ctx)
            _check_finite(loss, f"stage {run.stage.name} epoch {epoch + 1} iteration {it + 1}")
            run.scaler.scale(loss / accum).backward()
        lr = run.schedule.lr()  # unscaled (DynamicViT: the predictors' lr)
        if sync:
            _optimizer_step(run, ctx.args.clip_grad)
        stats = _reduce_stats(stats)
        extra = {"lr": lr, "data_time": data_time, "step_time": time.perf_counter() - tic,
                 "substituted": _batch_count(batch, "substituted"),
                 "decoder_fallbacks": _batch_count(batch, "decoder_fallbacks")}
        meter.update({**stats, **extra}, num=batch["label"].shape[0])
        if (it + 1) % ctx.log_period == 0 or it + 1 == total:
            _log_iter(run, epoch, it, total, stats, extra)
        if sync and _mid_epoch_save_due(it, total, ctx.checkpoint_iter_period):
            _save(run, epoch, it + 1, False, ctx)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", keep=f"{stats['keep_ratio']:.2f}")
        tic = time.perf_counter()
    return meter.summary()


def _mid_epoch_save_due(it: int, total: int, period: int) -> bool:
    return period > 0 and (it + 1) % period == 0 and it + 1 < total


def _reduce_stats(stats: dict[str, float]) -> dict[str, float]:
    """Average the step statistics over ranks (what a single process with the global batch would see)."""
    if du.get_world_size() == 1:
        return stats
    keys = sorted(stats)
    values = du.all_reduce_mean(torch.tensor([stats[k] for k in keys], dtype=torch.float64))
    return dict(zip(keys, values.tolist()))


def _save(run: StageRun, epoch: int, iteration: int, epoch_done: bool, ctx: EpochContext) -> str | None:
    """Save on the master; mid-epoch files of this epoch are removed once the epoch's own file exists."""
    if not du.is_master() or not ctx.output_dir:
        return None
    global_epoch = run.global_epoch_offset + epoch + 1
    name = ckpt.checkpoint_name(global_epoch, None if epoch_done else iteration)
    path = os.path.join(ckpt.checkpoint_dir(ctx.output_dir), name)
    ckpt.save_checkpoint(path, _payload(run, epoch, iteration, epoch_done, ctx.cfg_dump, list(ctx.stage_names)))
    logger.info("stage %s epoch %d/%d: saved %s", run.stage.name, epoch + 1, run.stage.epochs, path)
    if epoch_done:
        prefix = name[: -len(".pyth")] + "_iter_"
        for old in ckpt.list_checkpoints(ctx.output_dir):
            if os.path.basename(old).startswith(prefix):
                os.remove(old)
    return path


@torch.no_grad()
def eval_epoch(model: nn.Module, loader: Iterable[dict], modes: list[str], device: torch.device,
               amp_dtype: torch.dtype | None = None) -> ValResults:
    """Top-1/top-5 error and keep ratios on ``loader`` (gathered from every rank)."""
    model.eval()
    meter = ValMeter()
    for batch in loader:
        valid = torch.as_tensor(batch.get("valid", torch.ones(batch["label"].shape[0], dtype=torch.bool))).bool()
        if not valid.any():
            continue
        x, y = _to_device({"inputs": batch["inputs"][valid], "label": batch["label"][valid]}, device)
        with _autocast(device, amp_dtype):
            out = model(x, return_policy=True, modes=modes)
        meter.update(out.logits, y, _keep_ratios(out))
    logits, labels, keep = meter.tensors()
    if du.get_world_size() > 1:
        logits, labels, keep = (du.all_gather(t.to(device)).cpu() for t in (logits, labels, keep))
    return ValMeter.summarize(logits, labels, keep)


# ----------------------------------------------------------------------------- stages


def _start_stage(cfg: CfgNode, model: nn.Module, stage: Stage, index: int, offset: int, steps_per_epoch: int,
                 info: du.DistInfo, device: torch.device) -> StageRun:
    method = method_for_cfg(cfg)
    method.prepare_stage(cfg, model, stage)
    optimizer = method.optimizer(cfg, model, stage, steps_per_epoch)
    base_lr = method.base_lr(cfg, stage)
    total = stage.epochs * steps_per_epoch
    warmup = min(int(round(cfg.SOLVER.WARMUP_EPOCHS * steps_per_epoch)), max(total - 1, 0))
    schedule = LRSchedule(optimizer, total, base_lr, cfg.SOLVER.COSINE_END_LR, warmup, cfg.SOLVER.LR_POLICY)
    amp = amp_dtype_of(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    net: nn.Module = model
    if info.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
    modes = train_modes(stage, cast(int, model.num_groups))
    return StageRun(stage, index, model, net, optimizer, schedule, scaler, modes, offset)


def _restore_run(run: StageRun, payload: dict) -> None:
    run.optimizer.load_state_dict(payload["optimizer_state"])
    run.schedule.load_state_dict(payload["scheduler_state"])
    run.scaler.load_state_dict(payload["scaler_state"])
    ckpt.set_rng_state(payload["rng"])


def _resume_payload(cfg: CfgNode, stage_names: list[str], device: torch.device) -> dict | None:
    if not cfg.TRAIN.AUTO_RESUME:
        return None
    found = ckpt.load_newest_valid(cfg.OUTPUT_DIR, map_location=device)
    if found is None:
        return None
    path, payload = found
    if list(payload.get("stages", [])) != stage_names:
        raise ckpt.CheckpointError(f"{path} was written for the stages {payload.get('stages')}, this config has "
                                   f"{stage_names}; use another OUTPUT_DIR or TRAIN.AUTO_RESUME False")
    changes = ckpt.training_config_changes(str(payload.get("cfg", "")), cfg) if "cfg" in payload else []
    if changes:
        raise ckpt.CheckpointError(f"{path} was trained under another config ({'; '.join(changes[:8])}); use "
                                   "another OUTPUT_DIR, the old config, or TRAIN.AUTO_RESUME False to start over")
    pos = ckpt.position_of(payload)
    logger.info("resuming from %s: stage %s epoch %d iteration %d%s", path, payload["stage_name"], pos.epoch + 1,
                pos.iteration, " (epoch finished)" if pos.epoch_done else "")
    return payload


def _stage_start(payload: dict | None, index: int) -> tuple[int, int] | None:
    """(first epoch, first iteration) of stage ``index`` given the resume point; None: stage already done."""
    if payload is None or index > int(payload["stage"]):
        return 0, 0
    if index < int(payload["stage"]):
        return None
    pos = ckpt.position_of(payload)
    return (pos.epoch + 1, 0) if pos.epoch_done else (pos.epoch, pos.iteration)


def _epoch_context(cfg: CfgNode, args: StepArgs, stage_names: list[str], device: torch.device) -> EpochContext:
    return EpochContext(args, cfg.LOG_PERIOD, cfg.TRAIN.CHECKPOINT_ITER_PERIOD, cfg.OUTPUT_DIR, cfg.dump(),
                        tuple(stage_names), device, method=method_for_cfg(cfg))


def _step_args(cfg: CfgNode, world_size: int, device: torch.device) -> StepArgs:
    return StepArgs(clip_grad=cfg.SOLVER.CLIP_GRAD_NORM,
                    accum_steps=accumulation_steps(cfg.TRAIN.GLOBAL_BATCH_SIZE, cfg.TRAIN.BATCH_SIZE, world_size),
                    amp_dtype=amp_dtype_of(cfg, device), options=method_for_cfg(cfg).step_options(cfg))


def _run_stage(cfg: CfgNode, run: StageRun, start: tuple[int, int], loaders: dict, ctx: EpochContext) -> None:
    first_epoch, first_iter = start
    for epoch in range(first_epoch, run.stage.epochs):
        stats = train_epoch(run, loaders["train"], epoch, first_iter, ctx)
        first_iter = 0
        log_json_stats({"_type": "train_epoch", "stage": run.stage.name, "epoch": f"{epoch + 1}/{run.stage.epochs}",
                        "global_epoch": run.global_epoch_offset + epoch + 1, **stats})
        last = epoch + 1 == run.stage.epochs
        if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last:
            _save(run, epoch, 0, True, ctx)
        du.barrier()
        if loaders.get("val") is not None and ((epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or last):
            modes = eval_modes(run.stage, cast(int, run.model.num_groups))
            val = eval_epoch(run.model, loaders["val"], modes, ctx.device, ctx.args.amp_dtype)
            log_json_stats({"_type": "val_epoch", "stage": run.stage.name,
                            "epoch": f"{epoch + 1}/{run.stage.epochs}",
                            "global_epoch": run.global_epoch_offset + epoch + 1, **val.to_dict()})


def train(cfg: CfgNode, info: du.DistInfo = du.SINGLE_PROCESS, loader_fn: LoaderFn | None = None) -> nn.Module:
    """Run every training stage of ``cfg`` (resuming when a checkpoint exists); returns the trained model."""
    device = device_of(cfg, info.local_rank)
    loader_fn = loader_fn or construct_loader
    stages = stages_of(cfg)
    stage_names = [s.name for s in stages]
    logger.info("training stages: %s", ", ".join(f"{s.name} x{s.epochs}" for s in stages))
    model = build_initial_model(cfg, device)
    teacher = method_for_cfg(cfg).teacher(cfg, model)  # from the initial (dense) weights, before any resume
    payload = _resume_payload(cfg, stage_names, device)
    if payload is not None:
        model.load_state_dict(payload["model_state"])
    loaders = {"train": loader_fn(cfg, "train"), "val": loader_fn(cfg, "val") if cfg.TRAIN.EVAL_PERIOD > 0 else None}
    args = _step_args(cfg, info.world_size, device)
    ctx = _epoch_context(cfg, args, stage_names, device)
    ctx.teacher = teacher
    steps_per_epoch = max(math.ceil(len(cast(Sized, loaders["train"])) / args.accum_steps), 1)
    offset = 0
    for index, stage in enumerate(stages):
        start = _stage_start(payload, index)
        if start is not None and start[0] < stage.epochs:
            run = _start_stage(cfg, model, stage, index, offset, steps_per_epoch, info, device)
            if payload is not None and index == int(payload["stage"]):
                _restore_run(run, payload)
            _run_stage(cfg, run, start, loaders, ctx)
        offset += stage.epochs
    model.requires_grad_(True)
    return model
