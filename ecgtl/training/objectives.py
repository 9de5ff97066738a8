"""Self-supervised pretraining of an ecgtl encoder: a contrastive objective (SimCLR, Chen et al. 2020, as
applied to 12-lead ECGs by Mehari & Strodthoff 2022, whose SimCLR reached 0.90+ macro AUC on PTB-XL after
fine-tuning).

Two views of every record (two random crops through `InputPipeline.train_views`, each augmented by
`training/augment.py`) go through the encoder (every layer group except the head), concat pooling and a
projection MLP; the NT-Xent loss pulls the two views of a record together and pushes the other records of the
batch apart. Labels are never read: any dataset works, also one without diagnoses. The head is not in the
optimiser, so it stays as initialised (fine-tuning replaces it anyway).

Validation: the same loss on the validation split (fixed views), and every `probe_every` epochs a linear probe:
a logistic regression per class on the frozen encoder's pooled features of (at most 2 000) labelled training
records, scored as macro AUC on the validation records (`val_macro_auc`; NaN when there are no labels).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecgtl.data.dataset import batch_bounds, valid_lengths
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.models.base import AdaptiveConcatPool1d, EcgModel
from ecgtl.pipeline import InputPipeline
from ecgtl.training.accelerator import resolve_device
from ecgtl.training.augment import augment
from ecgtl.training.batches import TrainInputs
from ecgtl.training.checkpoint import restore_training, rng_state, save_checkpoint
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import EpochResult, FitResult

PROBE_RECORDS = 2000


class PooledFeatures(nn.Module):
    """The encoder's concat-pooled features [batch, 2 * n_features] (what the head sees first)."""

    def __init__(self, model: EcgModel) -> None:
        super().__init__()
        self.model, self.pool = model, AdaptiveConcatPool1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.model.features(x))


def projection_head(n_features: int, hidden: int = 256, out: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2 * n_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of paired embeddings a[i] <-> b[i] [batch, dim]: cross-entropy of each view's similarity to its
    partner against the 2 * batch - 2 other views."""
    z = nn.functional.normalize(torch.cat([a, b]), dim=1)
    similarity = z @ z.T / temperature
    n = len(a)
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(similarity, targets)


def encoder_groups(model: EcgModel) -> list[tuple[str, nn.Module]]:
    """Every layer group but the head: what self-supervised pretraining trains."""
    return model.layer_groups()[:-1]


def linear_probe_auc(model: EcgModel, pipeline: InputPipeline, train, rows: np.ndarray, val, seed: int) -> float:
    """Validation macro AUC of per-class logistic regressions on frozen pooled features (NaN without labels)."""
    from sklearn.linear_model import LogisticRegression

    if len(rows) < 10 or not train.labels[rows].any() or not val.labels.any():
        return float("nan")
    chosen = np.sort(np.random.default_rng(seed).permutation(rows)[:PROBE_RECORDS])
    features = PooledFeatures(model)
    train_x = pipeline.predict_logits(features, train.signals[chosen], valid_lengths(train)[chosen])
    val_x = pipeline.predict_logits(features, val.signals, valid_lengths(val))
    mean, sd = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x, val_x = (train_x - mean) / sd, (val_x - mean) / sd
    scores = np.zeros(val.labels.shape)
    fitted = np.zeros(val.labels.shape[1], dtype=bool)
    for j in range(train.labels.shape[1]):
        y = train.labels[chosen, j]
        if 0 < y.sum() < len(y):
            scores[:, j] = LogisticRegression(C=0.1, max_iter=300).fit(train_x, y).decision_function(val_x)
            fitted[j] = True
    aucs = np.where(fitted, per_class_auc(val.labels, scores), np.nan)  # an unfitted class is not a 0.5
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def fit_contrastive(model: EcgModel, train, val, config: TrainConfig, pipeline: InputPipeline, *,
                    temperature: float = 0.1, probe_every: int = 1, probe_rows: np.ndarray | None = None,
                    probe_split=None, train_rows: np.ndarray | None = None, checkpoint_path: Path | None = None,
                    resume: bool = False, on_epoch: Callable[[EpochResult], None] | None = None,
                    progress: bool = True, stop_after_epoch: int | None = None) -> FitResult:
    """Contrastive pretraining of `model`'s encoder on `train` (labels unused); returns the last state.

    `probe_split`/`probe_rows`: the labelled records of the linear probe (default: `train`, all rows). Every
    epoch checkpoints to `checkpoint_path`; `resume` continues from it to the same result.
    """
    config.validate()
    device = resolve_device(config.device)
    model.to(device)
    rows = np.arange(len(train)) if train_rows is None else np.asarray(train_rows)
    groups = encoder_groups(model)
    projection = projection_head(model.n_features).to(device)
    parameters = [p for _, module in groups for p in module.parameters()] + list(projection.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(batch_bounds(len(rows), config.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * steps_per_epoch, pct_start=0.3)
    for parameter in model.head.parameters():
        parameter.requires_grad_(False)
    result = FitResult(best_state={}, best_epoch=-1, best_val_macro_auc=-math.inf)
    first_epoch = 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = restore_training(checkpoint_path, {"model": model, "projection": projection}, optimizer, scheduler)
        result = FitResult.from_checkpoint(state["result"])
        first_epoch = state["epoch"] + 1
    n_trainable = sum(p.numel() for p in parameters)
    inputs = TrainInputs(pipeline, train, rows, device, device_cache=config.device_cache, prefetch=config.prefetch)
    pooled = PooledFeatures(model)
    for epoch in range(first_epoch, config.epochs):
        started = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        model.train()
        model.head.eval()
        losses = torch.zeros((), device=device)  # summed on the device, read once per epoch
        batches = 0
        for views, _ in inputs.epoch(config.batch_size, config.seed, epoch, n_views=2):
            if len(views[0]) < 2:
                continue  # a last batch of one record has no negatives
            embedded = [projection(pooled(augment(v, pipeline.fs, generator))) for v in views]
            loss = nt_xent(embedded[0], embedded[1], temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses += loss.detach()
            batches += 1
        val_loss = _validation_loss(model, projection, val, config, pipeline, temperature, device)
        probe = float("nan")
        if probe_every and ((epoch + 1) % probe_every == 0 or epoch + 1 == config.epochs):
            probe_data = probe_split if probe_split is not None else train
            probe_set = np.arange(len(probe_data)) if probe_rows is None else probe_rows
            probe = linear_probe_auc(model, pipeline, probe_data, probe_set, val, config.seed)
        epoch_result = EpochResult(epoch, float(losses) / max(batches, 1), val_loss, probe,
                                   [group["lr"] for group in optimizer.param_groups], n_trainable,
                                   time.perf_counter() - started)
        result.history.append(epoch_result)
        result.best_epoch, result.best_state = epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if np.isfinite(probe):
            result.best_val_macro_auc = probe
        if progress:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  contrastive loss {epoch_result.train_loss:.4f}  "
                  f"val {val_loss:.4f}  probe val macro AUC {probe:.4f}  {epoch_result.seconds:.1f} s",
                  file=sys.stderr, flush=True)
        if on_epoch:
            on_epoch(epoch_result)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {"model": model.state_dict(), "projection": projection.state_dict(),
                                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                              "rng": rng_state(), "epoch": epoch, "result": result.to_checkpoint(),
                                              "config": asdict(config)})
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break  # a simulated kill (tests)
    for parameter in model.head.parameters():
        parameter.requires_grad_(True)
    return result


@torch.no_grad()
def _validation_loss(model, projection, val, config: TrainConfig, pipeline: InputPipeline, temperature: float,
                     device) -> float:
    """The loss on validation records with views fixed across epochs (seed -1), BatchNorm in eval mode."""
    if len(val) < 2:
        return float("nan")
    model.eval()
    projection.eval()
    pooled = PooledFeatures(model)
    generator = torch.Generator().manual_seed(12_345)
    total, batches = 0.0, 0
    for views, _ in pipeline.train_views(val, np.arange(len(val)), config.batch_size, 12_345, 0):
        if len(views[0]) < 2:
            continue
        embedded = [projection(pooled(augment(v, pipeline.fs, generator).to(device))) for v in views]
        total += float(nt_xent(embedded[0], embedded[1], temperature))
        batches += 1
    projection.train()
    return total / max(batches, 1)
