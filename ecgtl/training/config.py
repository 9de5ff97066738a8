"""The training config, free of heavy imports (the CLI builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtl.errors import EcgtlError
from ecgtl.inputs import AGGREGATIONS

SCHEDULES = ("full", "two_stage", "gradual", "chain_thaw")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-2
    crop_s: float = 2.5
    stride_s: float = 1.25
    aggregation: str = "max"
    schedule: str = "full"
    epochs_per_stage: int = 1
    groups_per_stage: int = 1  # gradual: groups unfrozen per step
    decay: float = 1.0
    head_lr_mult: float = 1.0
    dropout: float = 0.5  # of the head (its first dropout is half of this), as fastai's head
    frozen_bn: str = "eval"
    patience: int = 0
    seed: int = 0
    device: str = "auto"

    def validate(self) -> TrainConfig:
        if self.aggregation not in AGGREGATIONS:
            raise EcgtlError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.frozen_bn not in ("eval", "train"):
            raise EcgtlError(f"frozen_bn must be 'eval' or 'train', got {self.frozen_bn!r}")
        if self.schedule not in SCHEDULES:
            raise EcgtlError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.decay < 1:
            raise EcgtlError("epochs and batch_size must be positive, lr > 0 and decay >= 1")
        if self.epochs_per_stage < 1 or self.groups_per_stage < 1 or self.head_lr_mult <= 0 or not 0 <= self.dropout < 1:
            raise EcgtlError("epochs_per_stage and groups_per_stage must be >= 1, head_lr_mult > 0, dropout in [0, 1)")
        return self
