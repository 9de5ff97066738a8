"""Supervised training: BCE with logits on the labels of random crops, the best epoch by validation macro AUC
(sliding windows over whole records, `InputPipeline.predict_logits`).

Options: `loss_weights` (positive, negative) weigh each label's BCE term per class (label-shift reweighting,
`evaluation/label_shift.py`); `augment(x, generator)` transforms each training batch (rate augmentation,
`training/augment.rate_augment`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ecgtl.data.dataset import valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.training.augment import rate_augment
from ecgtl.training.distributed import gather
from ecgtl.training.objectives.base import Objective, Validation

if TYPE_CHECKING:
    from ecgtl.data.cache import SplitData
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def macro_auc_or_nan(labels: np.ndarray, logits: np.ndarray) -> float:
    """The mean AUC over the classes that have one (NaN where none has)."""
    aucs = per_class_auc(labels, logits)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def bce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                                torch.from_numpy(labels.astype(np.float32))))


class Supervised(Objective):
    name = "supervised"

    def __init__(self, loss_weights: tuple[np.ndarray, np.ndarray] | None = None, augment: Augment | None = None) -> None:
        self.loss_weights, self.augment = loss_weights, augment

    @classmethod
    def check_pretraining(cls, config) -> None:
        if config.extra_specs:
            raise EcgtlError("extra_specs adds unlabelled data; objective=supervised trains on labels: choose a "
                             "self-supervised objective (contrastive)")
        if config.fs_augment and config.data.domain != "time":
            raise EcgtlError(f"fs_augment low-passes time-domain crops; data.domain is {config.data.domain}")

    @classmethod
    def for_pretraining(cls, config, labelled: tuple[SplitData, np.ndarray]) -> Supervised:  # noqa: ARG003
        """From the pretrain config: rate augmentation when `fs_augment` names a range."""
        if not config.fs_augment:
            return cls()
        rates, fs = config.fs_augment_range, config.data.fs
        return cls(augment=lambda x, generator: rate_augment(x, fs, rates, generator))

    def setup(self, model: nn.Module, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        self.pipeline, self.device = pipeline, device
        self.loss_function = nn.BCEWithLogitsLoss() if self.loss_weights is None else _weighted_bce(*self.loss_weights,
                                                                                                      device)

    def loss(self, network: nn.Module, views: list[torch.Tensor], labels: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        x = views[0] if self.augment is None else self.augment(views[0], generator)
        return self.loss_function(gather(network(x).float()), gather(labels))  # the global batch's (torchrun)

    def validate(self, model: nn.Module, val: SplitData, epoch: int, last: bool) -> Validation:  # noqa: ARG002
        logits = self.pipeline.predict_logits(model, val.signals, valid_lengths(val), device=self.device)
        auc = macro_auc_or_nan(val.labels, logits)
        return Validation(loss=bce(logits, val.labels), signal=auc, macro_auc=auc, logits=logits)


def _weighted_bce(positive: np.ndarray, negative: np.ndarray, device: torch.device) -> Callable:
    positive_t = torch.as_tensor(positive, dtype=torch.float32, device=device)
    negative_t = torch.as_tensor(negative, dtype=torch.float32, device=device)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = labels * positive_t + (1 - labels) * negative_t
        return (nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()

    return loss
