"""Fine-tuning schedules and discriminative learning rates, all expressed over `model.layer_groups()`.

One mechanism, several policies: a schedule says which layer groups are trainable at each epoch.
- `full`: everything trainable from the start (also what training from scratch uses);
- `two_stage`: the head alone for k epochs, then everything;
- `gradual` (ULMFiT, Howard & Ruder 2018): the head, then g more groups (from the top; g = 1 by default)
  every k epochs, until everything is trainable;
- `chain_thaw` (Felbo et al. 2017): the head alone, then each other group alone from the first, k epochs
  each, then everything;
- `frozen`: the head alone at every epoch (the linear-probe and frozen-random-encoder baselines; with
  `frozen_bn=eval` the encoder's BatchNorm statistics stay as they were, so the encoder is bit for bit unchanged).
Discriminative learning rates (ULMFiT): group i gets lr / decay ** (distance from the head); the head's lr can
be multiplied further (`head_lr_mult`, 1 by default).
"""

from __future__ import annotations

from torch import nn

from ecgtl.config import check_choice
from ecgtl.training.config import SCHEDULES, Schedule

__all__ = ["SCHEDULES"]


def trainable_mask(schedule: Schedule, n_groups: int, epoch: int, epochs_per_stage: int = 1,
                   groups_per_stage: int = 1) -> list[bool]:
    """Which of `n_groups` groups (head last) train at `epoch` (0-based)."""
    check_choice("schedule", schedule, Schedule)
    k = max(1, epochs_per_stage)
    stage = epoch // k
    everything = [True] * n_groups
    if schedule == "full":
        return everything
    if schedule == "frozen":
        return [False] * (n_groups - 1) + [True]
    if schedule == "two_stage":
        return everything if stage >= 1 else [False] * (n_groups - 1) + [True]
    if schedule == "gradual":
        unfrozen = min(n_groups, 1 + stage * max(1, groups_per_stage))
        return [i >= n_groups - unfrozen for i in range(n_groups)]
    # chain_thaw: stage 0 the head, stages 1..n-1 each body group alone, then everything.
    if stage == 0:
        return [False] * (n_groups - 1) + [True]
    if stage <= n_groups - 1:
        return [i == stage - 1 for i in range(n_groups)]
    return everything


def schedule_timeline(schedule: Schedule, n_groups: int, epochs: int, epochs_per_stage: int = 1,
                      groups_per_stage: int = 1) -> list[list[bool]]:
    """The whole schedule: one trainable mask (a bool per layer group, head last) per epoch. Public: a user
    previews what a schedule will train before running it (`schedule_timeline("gradual", 5, 6)`)."""
    return [trainable_mask(schedule, n_groups, e, epochs_per_stage, groups_per_stage) for e in range(epochs)]


def apply_mask(groups: list[tuple[str, nn.Module]], mask: list[bool]) -> int:
    """Set requires_grad per group; returns the number of trainable parameters."""
    trainable = 0
    for (_, module), on in zip(groups, mask, strict=True):
        for parameter in module.parameters():
            parameter.requires_grad_(on)
            trainable += parameter.numel() if on else 0
    return trainable


def freeze_batchnorm(groups: list[tuple[str, nn.Module]], mask: list[bool]) -> None:
    """Put BatchNorm layers of frozen groups in eval mode (running statistics stay as pretrained)."""
    for (_, module), on in zip(groups, mask, strict=True):
        if not on:
            for layer in module.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.eval()


def discriminative_lrs(lr: float, decay: float, n_groups: int, head_lr_mult: float = 1.0) -> list[float]:
    """lr / decay ** (distance from the head): the head gets lr (times `head_lr_mult`), the stem the smallest."""
    lrs = [lr / decay ** (n_groups - 1 - i) for i in range(n_groups)]
    lrs[-1] *= head_lr_mult
    return lrs
