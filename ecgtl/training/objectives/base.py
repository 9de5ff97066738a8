"""What an objective tells the one training loop (`training/loop.py:fit`); see the package docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from ecgtl.errors import EcgtlError

if TYPE_CHECKING:
    from ecgtl.data.cache import SplitData
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig


@dataclass
class Validation:
    """One epoch's validation: its loss, the signal that ranks epochs, the macro AUC where there is one (NaN
    otherwise) and the validation logits a supervised objective keeps with its best epoch."""

    loss: float
    signal: float
    macro_auc: float = float("nan")
    logits: np.ndarray | None = None


class Objective:
    """One kind of training. Subclasses set `name` and implement `loss` and `validate`; the rest has defaults
    that train every layer group of the model as it is.

    Class attributes:
    - `n_views`: crops of each record per batch (`InputPipeline.train_views`); `min_batch`: smaller batches are
      skipped (per process under torchrun);
    - `uses_labels`: False for a self-supervised objective (pretraining then fits a head on labels afterwards);
    - `signal`, `higher_is_better`: the logged name of the validation signal and its direction;
    - `metric_prefix`, `metric_names`: the names it logs under (a prefix, or one name per generic name), so that
      a self-supervised phase and the supervised head after it can share a run.
    """

    name: ClassVar[str] = ""
    n_views: ClassVar[int] = 1
    min_batch: ClassVar[int] = 1
    uses_labels: ClassVar[bool] = True
    signal: ClassVar[str] = "val_macro_auc"
    higher_is_better: ClassVar[bool] = True
    metric_prefix: ClassVar[str] = ""
    metric_names: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_pretraining(cls, config) -> None:
        """Refuse pretrain options this objective cannot honour (one line), before any data are read."""
        if config.extra_specs and cls.uses_labels:
            raise EcgtlError(f"extra_specs adds unlabelled data; objective={cls.name} trains on labels: choose a "
                             "self-supervised objective")
        if config.fs_augment:
            raise EcgtlError(f"fs_augment low-passes the crops of supervised pretraining; objective={cls.name} "
                             "does not use it")

    @classmethod
    def for_pretraining(cls, config, labelled: tuple[SplitData, np.ndarray]) -> Objective:  # noqa: ARG003
        """The objective `ecgtl pretrain --objective NAME` trains with, from the pretrain config (the options it
        reads) and the labelled training records of the source (`labelled`: split and rows; a linear probe's)."""
        return cls()

    def setup(self, model: nn.Module, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        """Called once by the loop before the optimiser exists: make the modules the objective adds, on `device`."""

    def layer_groups(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The groups the optimiser trains, head last (schedules and discriminative lrs count from it)."""
        return model.layer_groups()

    def modules(self) -> dict[str, nn.Module]:
        """Modules the objective adds (trained, switched to train mode, checkpointed under these keys)."""
        return {}

    def network(self, model: nn.Module) -> nn.Module:
        """What a training batch goes through (`torch.compile`d under `train.compile`)."""
        return model

    def loss(self, network: nn.Module, views: list[torch.Tensor], labels: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor | None:
        """The loss of one batch (inside the loop's autocast), or None to skip the batch. `generator` is the
        epoch's CPU generator, seeded from (seed, epoch), for random augmentations. Under torchrun `views` and
        `labels` are this process's part of the batch: an objective computes the global batch's loss from
        `distributed.gather`ed outputs (a no-op in one process), so that the processes train as one."""
        raise NotImplementedError

    def validate(self, model: nn.Module, val: SplitData, epoch: int, last: bool) -> Validation:
        """The validation after epoch `epoch` (`last`: the final one)."""
        raise NotImplementedError

    def nonfinite_hint(self, config: TrainConfig) -> str:
        """The likely cause of a non-finite training loss, for the one-line error that stops the run."""
        return f"train.lr {config.lr:g} is probably too high; lower it"

    # ------------------------------------------------------------------------------------------- naming, ranking
    def metric(self, generic: str) -> str:
        """The name this objective logs a generic metric (`train_loss`, `lr_stem`, ...) under."""
        return self.metric_names.get(generic, f"{self.metric_prefix}{generic}")

    def improved(self, signal: float, best: float) -> bool:
        """Whether `signal` beats `best`. While no finite signal has been seen, the latest epoch stands."""
        if not math.isfinite(signal):
            return not math.isfinite(best)
        if not math.isfinite(best):
            return True
        return signal > best if self.higher_is_better else signal < best
