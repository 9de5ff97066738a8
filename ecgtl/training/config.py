"""The training config, free of heavy imports (the CLI builds its options from it). Each enumerated option is
declared once, as the `Literal` type of its field; `SCHEDULES` and the like are read from those declarations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ecgtl.config import SEED_RANGE, Range, check_options, choices
from ecgtl.inputs import Aggregation

Schedule = Literal["full", "two_stage", "gradual", "chain_thaw", "frozen"]  # what each does: training/unfreeze.py
FrozenBn = Literal["eval", "train"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]  # what each means: training/accelerator.py
DeviceCache = Literal["auto", "on", "off"]

SCHEDULES: tuple[str, ...] = choices(Schedule)
PRECISIONS: tuple[str, ...] = choices(Precision)
DEVICE_CACHES: tuple[str, ...] = choices(DeviceCache)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-2
    crop_s: float = 2.5
    stride_s: float = 1.25
    aggregation: Aggregation = "max"
    schedule: Schedule = "full"
    epochs_per_stage: int = 1
    groups_per_stage: int = 1
    decay: float = 1.0
    head_lr_mult: float = 1.0
    dropout: float = 0.5
    frozen_bn: FrozenBn = "eval"
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    device_cache: DeviceCache = "auto"
    prefetch: int = 2
    precision: Precision = "auto"
    compile: bool = False
    sync_bn: bool = True
    system_metrics: bool = False
    explain_examples: int = 1

    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": Range(1, 100_000), "batch_size": Range(1, 1 << 16), "lr": Range(0, 10, low_open=True),
        "weight_decay": Range(0, 10), "crop_s": Range(0, 3600, low_open=True),
        "stride_s": Range(0, 3600, low_open=True), "epochs_per_stage": Range(1, 100_000),
        "groups_per_stage": Range(1, 1000), "decay": Range(1, 1000), "head_lr_mult": Range(0, 1e4, low_open=True),
        "dropout": Range(0, 0.999), "patience": Range(0, 100_000), "seed": SEED_RANGE,
        "prefetch": Range(0, 64),
        "explain_examples": Range(0, 1000),
    }
    HELP: ClassVar[dict[str, str]] = {
        "epochs": "Training epochs (the one-cycle schedule spans them all).",
        "batch_size": "Records per batch (one random crop each).",
        "lr": "Peak learning rate of the head (other layer groups: lr / decay**distance).",
        "weight_decay": "AdamW weight decay.",
        "crop_s": "Seconds per training crop and per evaluation window.",
        "stride_s": "Seconds between evaluation windows.",
        "aggregation": "How window outputs become a record's output.",
        "schedule": "Which layer groups train at each epoch (training/unfreeze.py).",
        "epochs_per_stage": "Epochs per unfreezing stage (two_stage, gradual, chain_thaw).",
        "groups_per_stage": "Layer groups unfrozen per gradual stage.",
        "decay": "Discriminative lr: each group below the head gets lr divided by this once more.",
        "head_lr_mult": "The head's lr is lr times this.",
        "dropout": "Head dropout (its first dropout is half of this, as fastai's head).",
        "frozen_bn": "BatchNorm of frozen groups: eval keeps its statistics, train updates them.",
        "patience": "Stop after this many epochs without a better validation signal (0: never).",
        "seed": "Seed of head initialisation, batches, crops, dropout and augmentation.",
        "device": "Device to train on: auto (cuda when present, else cpu), cpu, cuda, cuda:N, mps.",
        "device_cache": "Training records resident on the device: auto (an accelerator with room), on, off.",
        "prefetch": "Batches a background thread prepares ahead when not resident (0: on the training thread).",
        "precision": "auto (bf16 on CUDA that has it, else fp16 + GradScaler; fp32 on CPU), fp32, bf16, fp16.",
        "compile": "torch.compile the network for training steps (needs a C++ compiler on the CPU).",
        "sync_bn": "Under torchrun: BatchNorm statistics of the global batch, across processes (no effect in one).",
        "system_metrics": "Log CPU, memory and GPU use to the run (needs psutil: ecgtl[system]).",
        "explain_examples": "Test records per class explained on the report (0: none).",
    }

    def validate(self) -> TrainConfig:
        check_options(self)
        return self
