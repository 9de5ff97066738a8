"""What the self-supervised objectives (`contrastive`, `cpc`) share: they train the encoder (every layer group but
the head) and modules of their own, never read labels, log under `ssl_` names, and validate with the same loss
on fixed validation views plus, every `probe_every` epochs (and after the last), a linear probe: a logistic
regression per class on the frozen encoder's pooled features of (at most 2 000) labelled training records,
scored as macro AUC on the validation records (`val_probe_macro_auc`; NaN without labels or between probes).

A subclass says how a view is prepared for its network (`prepare`: an augmentation, or nothing), the loss of the
network's outputs for a batch's views (`batch_loss`), and which of the validation loss and the probe ranks its
epochs (`ranking_signal`). Training computes the loss of the global batch under torchrun (`gather`), validation
that of one process's batches (every process validates alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from ecgtl.data.dataset import valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.models.base import AdaptiveConcatPool1d, EcgModel
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


class SelfSupervised(Objective):
    """A self-supervised objective with a linear probe on `probe` (split, rows) every `probe_every` epochs (0:
    never). Subclasses implement `setup` (their modules), `network`, `batch_loss` and, if the probe ranks their
    epochs, `ranking_signal`."""

    min_batch = 2  # a record needs other records as negatives
    uses_labels = False
    signal = "ssl_val_loss"
    higher_is_better = False
    metric_prefix = "ssl_"
    metric_names: ClassVar[dict[str, str]] = {"train_loss": "ssl_loss", "val_macro_auc": "val_probe_macro_auc",
                                              "n_train_records": "n_ssl_records"}
    time_domain_because: ClassVar[str] = ""  # why the objective needs time-domain inputs

    def __init__(self, probe_every: int = 1, probe: tuple[SplitData, np.ndarray] | None = None) -> None:
        self.probe_every, self.probe = probe_every, probe

    @classmethod
    def check_pretraining(cls, config) -> None:
        super().check_pretraining(config)
        if config.data.domain != "time":
            raise EcgtlError(f"objective={cls.name} {cls.time_domain_because}; data.domain={config.data.domain} is "
                             "not supported (use time)")

    def setup(self, model: EcgModel, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        self.model, self.pipeline, self.device = model, pipeline, device
        self.batch_size, self.seed = config.batch_size, config.seed

    def prepare(self, view: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # noqa: ARG002
        """A view as the network gets it (an augmentation draws from `generator`)."""
        return view

    def batch_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The loss of a batch from the network's outputs for each view."""
        raise NotImplementedError

    def ranking_signal(self, loss: float, probe: float) -> float:  # noqa: ARG002
        """What ranks the epochs: the validation loss (lower is better) unless a subclass says otherwise."""
        return loss

    def loss(self, network: nn.Module, views: list[torch.Tensor], labels: torch.Tensor,  # noqa: ARG002
             generator: torch.Generator) -> torch.Tensor:
        # Under torchrun the negatives are the whole global batch's (`gather`), as in one process.
        return self.batch_loss([gather(network(self.prepare(view, generator))) for view in views])

    @torch.no_grad()
    def validate(self, model: EcgModel, val: SplitData, epoch: int, last: bool) -> Validation:
        loss = self.validation_loss(model, val)
        probe = float("nan")
        if self.probe is not None and self.probe_every and ((epoch + 1) % self.probe_every == 0 or last):
            probe = linear_probe_auc(model, self.pipeline, *self.probe, val, self.seed)
        return Validation(loss=loss, signal=self.ranking_signal(loss, probe), macro_auc=probe)

    def validation_loss(self, model: EcgModel, val: SplitData) -> float:
        """The loss on validation records with fixed views, BatchNorm in eval mode (NaN under `min_batch`)."""
        model.eval()
        for module in self.modules().values():
            module.eval()
        network = self.network(model)
        generator = torch.Generator().manual_seed(VALIDATION_VIEWS_SEED)
        total, batches = 0.0, 0
        for views, _ in self.pipeline.train_views(val, np.arange(len(val)), self.batch_size, VALIDATION_VIEWS_SEED, 0,
                                                  n_views=self.n_views):
            if len(views[0]) < self.min_batch:
                continue
            total += float(self.batch_loss([network(self.prepare(view, generator).to(self.device)) for view in views]))
            batches += 1
        return total / batches if batches else float("nan")
