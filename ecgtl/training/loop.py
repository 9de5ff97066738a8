"""The training loop, the only one: AdamW over an objective's layer groups (discriminative learning rates,
unfreezing schedules), one-cycle, the objective's loss on the crops of each batch, its validation after every
epoch; the best state by its validation signal; optional early stopping; per-epoch checkpoints that resume
exactly; a non-finite training loss stops the run with one line naming the epoch and the likely cause.

What is trained and how its loss and validation are computed is the objective's (`training/objectives/`:
`supervised` by default); precision, compile, patience, checkpoints, resume, the input path and the
after-epoch hook are the loop's, so every objective has them.

Determinism on CPU: each epoch reseeds torch (dropout) from (seed, epoch), draws its batches from
`default_rng([seed, epoch])` and its augmentations from a generator seeded from (seed, epoch), so an epoch
computes the same thing whether or not the run was resumed, and whichever input path (`training/batches.py`:
resident on the device or prefetched) delivers them.

Under torchrun (`training/distributed.py`) the same loop runs in every process on its part of each batch: the
network wrapped in DistributedDataParallel (rebuilt when the trainable groups change, as gradual unfreezing
does), BatchNorm synchronised across processes (`train.sync_bn`), validation scored in shards, the checkpoint
written by rank 0 and read by every rank. Every decision (best epoch, patience, a non-finite loss) is taken on
numbers every process has, so no process leaves the others waiting. Dropout masks and random augmentations are
drawn per process (seeded from seed, epoch and rank): with them, processes train like one statistically, not
to the digit.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecgtl.data.cache import SplitData
from ecgtl.data.dataset import batch_bounds
from ecgtl.errors import EcgtlError
from ecgtl.models import count_parameters
from ecgtl.pipeline import InputPipeline
from ecgtl.training import distributed
from ecgtl.training.accelerator import (
    autocast,
    grad_scaler,
    resolve_device,
    resolve_precision,
    training_network,
)
from ecgtl.training.batches import TrainInputs
from ecgtl.training.checkpoint import restore_training, rng_state, save_checkpoint
from ecgtl.training.config import TrainConfig
from ecgtl.training.objectives.base import Objective
from ecgtl.training.objectives.supervised import Supervised
from ecgtl.training.unfreeze import apply_mask, discriminative_lrs, freeze_batchnorm, trainable_mask

_LOSS_DTYPE = {"mps": torch.float32}  # the epoch's loss sum; float64 wherever the device has it


class NonFiniteLoss(EcgtlError):
    """The training loss became NaN or infinite: the run stops (FAILED) instead of training on garbage."""


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_macro_auc: float  # NaN where the objective has none (a contrastive epoch without a probe)
    lrs: list[float]
    trainable_params: int
    seconds: float
    signal: float = float("nan")  # the objective's validation signal (supervised: val_macro_auc)


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_signal: float  # the objective's validation signal at the best epoch
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False
    best_val_logits: np.ndarray | None = None  # validation logits of the best epoch (no second inference needed)

    def to_checkpoint(self) -> dict:
        """Tensors and plain values only (checkpoints load with weights_only=True)."""
        logits = None if self.best_val_logits is None else torch.from_numpy(self.best_val_logits)
        return {"best_state": self.best_state, "best_epoch": self.best_epoch, "best_signal": self.best_signal,
                "history": [asdict(h) for h in self.history], "stopped_early": self.stopped_early,
                "best_val_logits": logits}

    @classmethod
    def from_checkpoint(cls, data: dict) -> FitResult:
        logits = data.get("best_val_logits")
        return cls(data["best_state"], data["best_epoch"], data["best_signal"],
                   [EpochResult(**h) for h in data["history"]], data["stopped_early"],
                   None if logits is None else logits.numpy())


def fit(model: nn.Module, train: SplitData, val: SplitData, config: TrainConfig, pipeline: InputPipeline,
        objective: Objective | None = None, *, train_rows: np.ndarray | None = None,
        checkpoint_path: Path | None = None, resume: bool = False,
        on_epoch: Callable[[EpochResult], None] | None = None, progress: bool = True,
        stop_after_epoch: int | None = None) -> FitResult:
    """Train `model` with `objective` (default: supervised) on `pipeline`'s inputs of `train` (its `train_rows`,
    default all) and return the best state by the objective's validation signal on `val`; the model ends in it.

    `checkpoint_path` gets a checkpoint after every epoch; with `resume`, training continues from it and
    reaches the same result as an uninterrupted run. `on_epoch` is the after-epoch hook (logging, pruning:
    it may raise to stop the run). `stop_after_epoch` ends early on purpose (for tests that simulate a kill).
    """
    objective = objective if objective is not None else Supervised()
    config.validate()
    world = distributed.world()
    device = distributed.device_for(resolve_device(config.device))
    model.to(device)
    objective.setup(model, pipeline, config, device)
    groups = objective.layer_groups(model)
    rows = np.arange(len(train)) if train_rows is None else np.asarray(train_rows)
    if len(rows) < 2:
        raise EcgtlError(f"the training split has {len(rows)} record(s); BatchNorm needs at least 2")
    steps_per_epoch = len(batch_bounds(len(rows), config.batch_size))
    if hasattr(model, "set_head_dropout"):
        model.set_head_dropout(config.dropout)
    modules = {"model": model, **objective.modules()}
    parallel = Parallel(world, modules, groups, config) if world.size > 1 else None
    lrs = discriminative_lrs(config.lr, config.decay, len(groups), config.head_lr_mult)
    optimizer = torch.optim.AdamW([{"params": list(module.parameters()), "lr": lr}
                                   for (_, module), lr in zip(groups, lrs, strict=True)],
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lrs, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.3)
    precision = resolve_precision(config.precision, device)
    scaler = grad_scaler(device, precision)
    network = objective.network(model)
    step_network = training_network(network, config.compile, device) if parallel is None else None
    inputs = TrainInputs(pipeline, train, rows, device, device_cache=config.device_cache, prefetch=config.prefetch)
    progress = progress and world.is_main
    if progress:
        print(f"training ({objective.name}) inputs: {inputs.describe()}; precision {precision}"
              f"{'; torch.compile' if config.compile else ''}"
              f"{f'; {world.size} processes' if parallel else ''}", file=sys.stderr, flush=True)
    result = FitResult(best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                       best_epoch=-1, best_signal=float("nan"))
    first_epoch = 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = restore_training(checkpoint_path, modules, optimizer, scheduler, objective.name)
        if state.get("grad_scaler"):  # fp16: the loss scale continues where it was
            scaler.load_state_dict(state["grad_scaler"])
        result = FitResult.from_checkpoint(state["result"])
        first_epoch = state["epoch"] + 1
    total = sum(count_parameters(module) for module in modules.values())  # a projection head counts too
    seed = config.seed + 7_919 * world.rank  # dropout and augmentations per process (rank 0: one process's)
    try:
        for epoch in range(first_epoch, config.epochs):
            if result.stopped_early:
                break  # a run that stopped early and was killed before it finished resumes to the same end
            started = time.perf_counter()
            torch.manual_seed(seed * 100_003 + epoch)
            mask = trainable_mask(config.schedule, len(groups), epoch, config.epochs_per_stage, config.groups_per_stage)
            n_trainable = apply_mask(groups, mask)
            if parallel is not None:
                step_network = parallel.network(network, mask, device)
            for module in modules.values():
                module.train()
            if config.frozen_bn == "eval":
                freeze_batchnorm(groups, mask)
            losses = torch.zeros((), dtype=_LOSS_DTYPE.get(device.type, torch.float64), device=device)
            steps = 0
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
            for views, labels in inputs.epoch(config.batch_size, config.seed, epoch, n_views=objective.n_views,
                                              min_batch=objective.min_batch):
                with autocast(device, precision):
                    loss = objective.loss(step_network, views, labels, generator)
                if loss is None:
                    continue
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses += loss.detach()  # summed on the device: no host sync per step
                steps += 1
            train_loss = float(losses) / max(steps, 1)  # the global batches' loss: the same on every rank
            if not math.isfinite(train_loss):
                raise NonFiniteLoss(f"epoch {epoch + 1}: the {objective.name} training loss is {train_loss} "
                                    f"({objective.nonfinite_hint(config)}); nothing was registered")
            validation = objective.validate(model, val, epoch, last=epoch + 1 == config.epochs)
            epoch_result = EpochResult(epoch, train_loss, validation.loss, validation.macro_auc,
                                       [group["lr"] for group in optimizer.param_groups], n_trainable,
                                       time.perf_counter() - started, validation.signal)
            result.history.append(epoch_result)
            if objective.improved(validation.signal, result.best_signal):
                result.best_signal = validation.signal if math.isfinite(validation.signal) else result.best_signal
                result.best_epoch = epoch
                result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                result.best_val_logits = validation.logits
            if progress:
                print(f"epoch {epoch + 1:>3}/{config.epochs}  {objective.metric('train_loss')} {train_loss:.4f}  "
                      f"{objective.metric('val_loss')} {validation.loss:.4f}  "
                      f"{objective.metric('val_macro_auc')} {validation.macro_auc:.4f}  "
                      f"lr {max(epoch_result.lrs):.2e}  trainable {n_trainable:,}/{total:,}  "
                      f"{epoch_result.seconds:.1f} s", file=sys.stderr, flush=True)
            if on_epoch:
                on_epoch(epoch_result)
            if config.patience and epoch - result.best_epoch >= config.patience:
                result.stopped_early = True
            if checkpoint_path is not None and world.is_main:  # rank 0 writes; every rank reads on resume
                save_checkpoint(checkpoint_path, {**{key: module.state_dict() for key, module in modules.items()},
                                                  "optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict(), "rng": rng_state(),
                                                  "epoch": epoch, "grad_scaler": scaler.state_dict(),
                                                  "result": result.to_checkpoint(), "config": asdict(config),
                                                  "objective": objective.name})
            if result.stopped_early or (stop_after_epoch is not None and epoch >= stop_after_epoch):
                break
    finally:
        if parallel is not None:
            parallel.close()
    model.load_state_dict(result.best_state)
    return result


class Parallel:
    """One fit's data parallelism: parameters outside the objective's groups frozen for the fit (DDP must see
    every trainable parameter receive a gradient), BatchNorm synchronised (`train.sync_bn`), and the network
    wrapped in DistributedDataParallel, again whenever the trainable groups change."""

    def __init__(self, world: distributed.World, modules: dict[str, nn.Module], groups, config: TrainConfig) -> None:
        self.world, self.modules, self.config = world, modules, config
        trained = {id(p) for _, group in groups for p in group.parameters()}
        self.outside = [p for module in modules.values() for p in module.parameters()
                        if id(p) not in trained and p.requires_grad]
        for parameter in self.outside:
            parameter.requires_grad_(False)
        if config.sync_bn:
            for module in modules.values():
                distributed.sync_batchnorm(module)
        self.mask: list[bool] | None = None
        self.wrapped: nn.Module | None = None

    def network(self, network: nn.Module, mask: list[bool], device: torch.device) -> nn.Module:
        if mask != self.mask:
            from torch.nn.parallel import DistributedDataParallel

            self.mask = mask
            # Synchronised BatchNorm keeps the statistics equal on every rank; without it, rank 0's are sent
            # before every forward pass (DDP's default).
            ddp = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=not self.config.sync_bn)
            self.wrapped = training_network(ddp, self.config.compile, device)
        return self.wrapped

    def close(self) -> None:
        """The modules as they were (plain BatchNorm, the parameters outside the groups trainable again)."""
        if self.config.sync_bn:
            for module in self.modules.values():
                distributed.plain_batchnorm(module)
        for parameter in self.outside:
            parameter.requires_grad_(True)
