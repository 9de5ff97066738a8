"""Training objectives: what one kind of training optimises, as plugins of the one loop (`training/loop.py:fit`).

An objective (`base.Objective`) says which layer groups it trains (head last, so that schedules, discriminative
learning rates and frozen BatchNorm apply to them), which modules it adds (a projection head, trained and
checkpointed with the model), the network a batch goes through (compiled under `train.compile`), the loss of a
batch, its validation (a loss, the signal that picks the best epoch and drives patience and pruning) and the
names it logs per epoch. Everything else is the loop's, so every objective has it: precision and the fp16 loss
scale, `torch.compile`, patience, checkpoints and bitwise resume, the device-resident split and prefetching, the
after-epoch hook (logging, pruning) and the stop on a non-finite loss.

Registered objectives (`OBJECTIVES`, the values of `pretrain.objective`):
- `supervised`: BCE with logits on the labels (optionally weighted per class, optionally rate-augmented);
- `contrastive`: SimCLR's NT-Xent between two augmented crops of each record, labels unused;
- `cpc`: contrastive predictive coding, InfoNCE of a causal context's guesses of the next segments' encodings.
The self-supervised ones share their probe and validation (`self_supervised.SelfSupervised`).
The frozen-encoder baselines are `supervised` under the `frozen` schedule (a policy of the loop).

Add an objective: one module in this folder with a subclass of `Objective`, and one line in `OBJECTIVES`
naming it as "module:Class" (imported when first used, so that `ecgtl --help` never imports torch). A test or a
plugin may register a class directly: `OBJECTIVES["toy"] = Toy`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ecgtl.config import check_choice

if TYPE_CHECKING:
    from ecgtl.training.objectives.base import Objective

OBJECTIVES: dict[str, str | type[Objective]] = {
    "supervised": "ecgtl.training.objectives.supervised:Supervised",
    "contrastive": "ecgtl.training.objectives.contrastive:Contrastive",
    "cpc": "ecgtl.training.objectives.cpc:CPC",
}


def objective_class(name: str) -> type[Objective]:
    """The class registered as `name` (imported on first use)."""
    check_choice("objective", name, OBJECTIVES)
    entry = OBJECTIVES[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
    return entry
