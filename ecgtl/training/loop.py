"""The training loop: AdamW, one-cycle, BCE-with-logits on random crops; sliding-window validation; best
checkpoint by validation macro AUC; optional early stopping; per-epoch checkpoints that resume exactly.

Determinism on CPU: each epoch reseeds torch (dropout) from (seed, epoch) and draws its batches from
`default_rng([seed, epoch])`, so an epoch computes the same thing whether or not the run was resumed, and
whichever input path (`training/batches.py`: resident on the device or prefetched) delivers them.
"""

from __future__ import annotations

import copy
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
from ecgtl.data.dataset import batch_bounds, valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.models import count_parameters
from ecgtl.pipeline import InputPipeline
from ecgtl.training.accelerator import autocast, grad_scaler, resolve_device, resolve_precision
from ecgtl.training.batches import TrainInputs
from ecgtl.training.checkpoint import restore_training, rng_state, save_checkpoint
from ecgtl.training.config import TrainConfig
from ecgtl.training.unfreeze import (
    apply_mask,
    discriminative_lrs,
    freeze_batchnorm,
    trainable_mask,
)

_LOSS_DTYPE = {"mps": torch.float32}  # the epoch's loss sum; float64 wherever the device has it


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_macro_auc: float
    lrs: list[float]
    trainable_params: int
    seconds: float


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_val_macro_auc: float
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False
    best_val_logits: np.ndarray | None = None  # validation logits of the best epoch (no second inference needed)

    def to_checkpoint(self) -> dict:
        """Tensors and plain values only (checkpoints load with weights_only=True)."""
        logits = None if self.best_val_logits is None else torch.from_numpy(self.best_val_logits)
        return {"best_state": self.best_state, "best_epoch": self.best_epoch,
                "best_val_macro_auc": self.best_val_macro_auc, "history": [asdict(h) for h in self.history],
                "stopped_early": self.stopped_early, "best_val_logits": logits}

    @classmethod
    def from_checkpoint(cls, data: dict) -> FitResult:
        logits = data.get("best_val_logits")
        return cls(data["best_state"], data["best_epoch"], data["best_val_macro_auc"],
                   [EpochResult(**h) for h in data["history"]], data["stopped_early"],
                   None if logits is None else logits.numpy())


def _macro_auc_or_nan(labels: np.ndarray, logits: np.ndarray) -> float:
    aucs = per_class_auc(labels, logits)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def _bce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels.astype(np.float32))))


def _weighted_bce(positive: np.ndarray, negative: np.ndarray, device: torch.device) -> Callable:
    positive_t = torch.as_tensor(positive, dtype=torch.float32, device=device)
    negative_t = torch.as_tensor(negative, dtype=torch.float32, device=device)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = labels * positive_t + (1 - labels) * negative_t
        return (nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()

    return loss


def fit(model: nn.Module, train: SplitData, val: SplitData, config: TrainConfig, pipeline: InputPipeline, *,
        train_rows: np.ndarray | None = None, checkpoint_path: Path | None = None, resume: bool = False,
        on_epoch: Callable[[EpochResult], None] | None = None, progress: bool = True,
        stop_after_epoch: int | None = None, loss_weights: tuple[np.ndarray, np.ndarray] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None) -> FitResult:
    """Train `model` on `pipeline`'s inputs and return the best state by validation macro AUC.

    `checkpoint_path` gets a checkpoint after every epoch; with `resume`, training continues from it and
    reaches the same result as an uninterrupted run. `on_epoch` is the after-epoch hook (logging, pruning:
    it may raise to stop the run). `stop_after_epoch` ends early on purpose (for tests that simulate a kill).
    `loss_weights`: (positive, negative) weights [classes] of each label's BCE term (label-shift reweighting).
    `augment(x, generator)` transforms each training batch, its generator seeded from (seed, epoch).
    """
    config.validate()
    device = resolve_device(config.device)
    model.to(device)
    groups = model.layer_groups()
    rows = np.arange(len(train)) if train_rows is None else np.asarray(train_rows)
    if len(rows) < 2:
        raise EcgtlError(f"the training split has {len(rows)} record(s); BatchNorm needs at least 2")
    steps_per_epoch = len(batch_bounds(len(rows), config.batch_size))
    if hasattr(model, "set_head_dropout"):
        model.set_head_dropout(config.dropout)
    lrs = discriminative_lrs(config.lr, config.decay, len(groups), config.head_lr_mult)
    optimizer = torch.optim.AdamW([{"params": list(module.parameters()), "lr": lr} for (_, module), lr in zip(groups, lrs, strict=True)],
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lrs, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.3)
    precision = resolve_precision(config.precision, device)
    scaler_amp = grad_scaler(device, precision)
    forward = torch.compile(model) if config.compile else model  # shares the model's parameters and state
    inputs = TrainInputs(pipeline, train, rows, device, device_cache=config.device_cache, prefetch=config.prefetch)
    if progress:
        print(f"training inputs: {inputs.describe()}; precision {precision}"
              f"{'; torch.compile' if config.compile else ''}", file=sys.stderr, flush=True)
    loss_function = nn.BCEWithLogitsLoss() if loss_weights is None else _weighted_bce(*loss_weights, device)
    val_lengths = valid_lengths(val)
    result = FitResult(best_state=copy.deepcopy(model.state_dict()), best_epoch=-1, best_val_macro_auc=-math.inf)
    first_epoch = 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = restore_training(checkpoint_path, {"model": model}, optimizer, scheduler)
        if state.get("grad_scaler"):  # fp16: the loss scale continues where it was
            scaler_amp.load_state_dict(state["grad_scaler"])
        result = FitResult.from_checkpoint(state["result"])
        first_epoch = state["epoch"] + 1
    for epoch in range(first_epoch, config.epochs):
        started = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)
        mask = trainable_mask(config.schedule, len(groups), epoch, config.epochs_per_stage, config.groups_per_stage)
        n_trainable = apply_mask(groups, mask)
        model.train()
        if config.frozen_bn == "eval":
            freeze_batchnorm(groups, mask)
        losses = torch.zeros((), dtype=_LOSS_DTYPE.get(device.type, torch.float64), device=device)
        steps = 0
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch + 1)
        for views, y in inputs.epoch(config.batch_size, config.seed, epoch):
            x = views[0] if augment is None else augment(views[0], generator)
            with autocast(device, precision):
                loss = loss_function(forward(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler_amp.scale(loss).backward()
            scaler_amp.step(optimizer)
            scaler_amp.update()
            scheduler.step()
            losses += loss.detach()  # summed on the device: no host sync per step
            steps += 1
        val_logits = pipeline.predict_logits(model, val.signals, val_lengths, device=device)
        val_auc = _macro_auc_or_nan(val.labels, val_logits)
        epoch_result = EpochResult(epoch, float(losses) / steps, _bce(val_logits, val.labels), val_auc,
                                   [group["lr"] for group in optimizer.param_groups], n_trainable,
                                   time.perf_counter() - started)
        result.history.append(epoch_result)
        if np.isfinite(val_auc) and val_auc > result.best_val_macro_auc or result.best_epoch < 0:
            result.best_val_macro_auc = val_auc if np.isfinite(val_auc) else result.best_val_macro_auc
            result.best_epoch = epoch
            result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            result.best_val_logits = val_logits
        if progress:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  train_loss {epoch_result.train_loss:.4f}  "
                  f"val_loss {epoch_result.val_loss:.4f}  val_macro_auc {val_auc:.4f}  "
                  f"lr {max(epoch_result.lrs):.2e}  trainable {n_trainable:,}/{count_parameters(model):,}  "
                  f"{epoch_result.seconds:.1f} s", file=sys.stderr, flush=True)
        if on_epoch:
            on_epoch(epoch_result)
        if config.patience and epoch - result.best_epoch >= config.patience:
            result.stopped_early = True
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                              "scheduler": scheduler.state_dict(), "rng": rng_state(), "epoch": epoch,
                                              "grad_scaler": scaler_amp.state_dict(), "result": result.to_checkpoint(),
                                              "config": asdict(config)})
        if result.stopped_early or (stop_after_epoch is not None and epoch >= stop_after_epoch):
            break
    model.load_state_dict(result.best_state)
    return result
