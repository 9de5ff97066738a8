"""Self-supervised pretraining of an ecgtl encoder: a contrastive objective (SimCLR, Chen et al. 2020, as
applied to 12-lead ECGs by Mehari & Strodthoff 2022, whose SimCLR reached 0.90+ macro AUC on PTB-XL after
fine-tuning).

Two views of every record (two random crops from the loop's crop plan, each augmented by
`training/augment.py`) go through the encoder (every layer group except the head), concat pooling and a
projection MLP; the NT-Xent loss pulls the two views of a record together and pushes the other records of the
batch apart. Labels are never read: any dataset works, also one without diagnoses. The head is not among the
trained groups, so it stays as initialised (fine-tuning replaces it anyway); the projection is the groups'
"head" (schedules and discriminative learning rates count from it).

Validation: the same loss on the validation split (views fixed across epochs, BatchNorm in eval mode): the
signal (lower is better) that picks the best epoch and drives patience. Every `probe_every` epochs (and after
the last) a linear probe: a logistic regression per class on the frozen encoder's pooled features of (at most
2 000) labelled training records, scored as macro AUC on the validation records (`val_probe_macro_auc`; NaN
without labels or between probes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ecgtl.data.dataset import valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.models.base import AdaptiveConcatPool1d, EcgModel
from ecgtl.training.augment import augment
from ecgtl.training.distributed import gather
from ecgtl.training.objectives.base import Objective, Validation

if TYPE_CHECKING:
    from ecgtl.data.cache import SplitData
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig

PROBE_RECORDS = 2000
VALIDATION_VIEWS_SEED = 12_345  # the validation views are the same at every epoch


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
    """NT-Xent of paired embeddings `a[i] <-> b[i]` (`[batch, dim]`): cross-entropy of each view's similarity to its
    partner against the 2 * batch - 2 other views. Computed in float32 whatever the autocast: a similarity over
    a small temperature leaves fp16's range."""
    z = nn.functional.normalize(torch.cat([a, b]).float(), dim=1)
    with torch.autocast(z.device.type, enabled=False):
        similarity = z @ z.T / temperature
        n = len(a)
        similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return nn.functional.cross_entropy(similarity, targets)


def encoder_groups(model: EcgModel) -> list[tuple[str, nn.Module]]:
    """Every layer group but the head: what self-supervised pretraining trains."""
    return model.layer_groups()[:-1]


def linear_probe_auc(model: EcgModel, pipeline: InputPipeline, train: SplitData, rows: np.ndarray, val: SplitData,
                     seed: int) -> float:
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


class Contrastive(Objective):
    """NT-Xent at `temperature`; a linear probe on `probe` (split, rows) every `probe_every` epochs (0: never)."""

    name = "contrastive"
    n_views = 2
    min_batch = 2  # a record needs other records as negatives
    uses_labels = False
    signal = "ssl_val_loss"
    higher_is_better = False
    metric_prefix = "ssl_"
    metric_names = {"train_loss": "ssl_loss", "val_macro_auc": "val_probe_macro_auc",
                    "n_train_records": "n_ssl_records"}

    def __init__(self, temperature: float = 0.1, probe_every: int = 1,
                 probe: tuple[SplitData, np.ndarray] | None = None) -> None:
        self.temperature, self.probe_every, self.probe = temperature, probe_every, probe

    @classmethod
    def check_pretraining(cls, config) -> None:
        super().check_pretraining(config)
        if config.data.domain != "time":
            raise EcgtlError(f"objective=contrastive augments time signals; data.domain={config.data.domain} is not "
                             "supported (use time)")

    @classmethod
    def for_pretraining(cls, config, labelled: tuple[SplitData, np.ndarray]) -> Contrastive:
        return cls(temperature=config.temperature, probe_every=config.probe_every, probe=labelled)

    def setup(self, model: EcgModel, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        self.model, self.pipeline, self.device = model, pipeline, device
        self.batch_size, self.seed = config.batch_size, config.seed
        self.projection = projection_head(model.n_features).to(device)

    def layer_groups(self, model: EcgModel) -> list[tuple[str, nn.Module]]:
        return [*encoder_groups(model), ("projection", self.projection)]

    def modules(self) -> dict[str, nn.Module]:
        return {"projection": self.projection}

    def network(self, model: EcgModel) -> nn.Module:
        return nn.Sequential(PooledFeatures(model), self.projection)

    def loss(self, network: nn.Module, views: list[torch.Tensor], labels: torch.Tensor,  # noqa: ARG002
             generator: torch.Generator) -> torch.Tensor:
        # Under torchrun the negatives are the whole global batch's (`gather`), as in one process.
        embedded = [gather(network(augment(view, self.pipeline.fs, generator))) for view in views]
        return nt_xent(embedded[0], embedded[1], self.temperature)

    @torch.no_grad()
    def validate(self, model: EcgModel, val: SplitData, epoch: int, last: bool) -> Validation:
        loss = self._validation_loss(model, val)
        probe = float("nan")
        if self.probe is not None and self.probe_every and ((epoch + 1) % self.probe_every == 0 or last):
            probe = linear_probe_auc(model, self.pipeline, *self.probe, val, self.seed)
        return Validation(loss=loss, signal=loss, macro_auc=probe)

    def _validation_loss(self, model: EcgModel, val: SplitData) -> float:
        """The loss on validation records with fixed views, BatchNorm in eval mode (NaN under 2 records)."""
        if len(val) < 2:
            return float("nan")
        model.eval()
        self.projection.eval()
        network = self.network(model)
        generator = torch.Generator().manual_seed(VALIDATION_VIEWS_SEED)
        total, batches = 0.0, 0
        for views, _ in self.pipeline.train_views(val, np.arange(len(val)), self.batch_size, VALIDATION_VIEWS_SEED, 0):
            if len(views[0]) < 2:
                continue
            embedded = [network(augment(view, self.pipeline.fs, generator).to(self.device)) for view in views]
            total += float(nt_xent(embedded[0], embedded[1], self.temperature))
            batches += 1
        return total / max(batches, 1)

    def nonfinite_hint(self, config: TrainConfig) -> str:
        return (f"the temperature {self.temperature:g} is probably too low, or train.lr {config.lr:g} too high; "
                "raise the temperature (0.1 is usual) or lower the lr")
