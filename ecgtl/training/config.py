"""The training config, free of heavy imports (the CLI builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ecgtl.config import SEED_RANGE, Range, check_numbers
from ecgtl.errors import EcgtlError
from ecgtl.inputs import AGGREGATIONS

SCHEDULES = ("full", "two_stage", "gradual", "chain_thaw", "frozen")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # what each means: training/accelerator.py
DEVICE_CACHES = ("auto", "on", "off")


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
    device_cache: str = "auto"  # training records resident on the device: auto (an accelerator with room), on, off
    prefetch: int = 2  # batches a background thread prepares ahead when not resident (0: on the training thread)
    precision: str = "auto"  # auto (bf16 on CUDA that has it, else fp16 + GradScaler; fp32 on CPU), fp32, bf16, fp16
    compile: bool = False  # torch.compile the model for training steps
    system_metrics: bool = False  # log CPU, memory, GPU use to the run (needs psutil: ecgtl[system])
    explain_examples: int = 1  # test records per class explained on the report (ecgtl/explain.py; 0: none)

    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": Range(1, 100_000), "batch_size": Range(1, 1 << 16), "lr": Range(0, 10, low_open=True),
        "weight_decay": Range(0, 10), "crop_s": Range(0, 3600, low_open=True),
        "stride_s": Range(0, 3600, low_open=True), "epochs_per_stage": Range(1, 100_000),
        "groups_per_stage": Range(1, 1000), "decay": Range(1, 1000), "head_lr_mult": Range(0, 1e4, low_open=True),
        "dropout": Range(0, 0.999), "patience": Range(0, 100_000), "seed": SEED_RANGE,
        "prefetch": Range(0, 64),
        "explain_examples": Range(0, 1000),
    }

    def validate(self) -> TrainConfig:
        check_numbers(self)
        if self.aggregation not in AGGREGATIONS:
            raise EcgtlError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.frozen_bn not in ("eval", "train"):
            raise EcgtlError(f"frozen_bn must be 'eval' or 'train', got {self.frozen_bn!r}")
        if self.schedule not in SCHEDULES:
            raise EcgtlError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.device_cache not in DEVICE_CACHES:
            raise EcgtlError(f"device_cache must be one of {', '.join(DEVICE_CACHES)}, got {self.device_cache!r}")
        if self.precision not in PRECISIONS:
            raise EcgtlError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        return self
