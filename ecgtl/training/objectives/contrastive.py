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
signal (lower is better) that picks the best epoch and drives patience; the linear probe of every
self-supervised objective (`self_supervised.py`) beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ecgtl.models.base import EcgModel
from ecgtl.training.augment import augment
from ecgtl.training.objectives.self_supervised import PooledFeatures, SelfSupervised, encoder_groups

if TYPE_CHECKING:
    from ecgtl.data.cache import SplitData
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig


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


class Contrastive(SelfSupervised):
    """NT-Xent at `temperature` between the projected, pooled features of two augmented views of each record."""

    name = "contrastive"
    n_views = 2
    time_domain_because = "augments time signals"

    def __init__(self, temperature: float = 0.1, probe_every: int = 1,
                 probe: tuple[SplitData, np.ndarray] | None = None) -> None:
        super().__init__(probe_every, probe)
        self.temperature = temperature

    @classmethod
    def for_pretraining(cls, config, labelled: tuple[SplitData, np.ndarray]) -> Contrastive:
        return cls(temperature=config.temperature, probe_every=config.probe_every, probe=labelled)

    def setup(self, model: EcgModel, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        super().setup(model, pipeline, config, device)
        self.projection = projection_head(model.n_features).to(device)

    def layer_groups(self, model: EcgModel) -> list[tuple[str, nn.Module]]:
        return [*encoder_groups(model), ("projection", self.projection)]

    def modules(self) -> dict[str, nn.Module]:
        return {"projection": self.projection}

    def network(self, model: EcgModel) -> nn.Module:
        return nn.Sequential(PooledFeatures(model), self.projection)

    def prepare(self, view: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment(view, self.pipeline.fs, generator)

    def batch_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return nt_xent(outputs[0], outputs[1], self.temperature)

    def nonfinite_hint(self, config: TrainConfig) -> str:
        return (f"the temperature {self.temperature:g} is probably too low, or train.lr {config.lr:g} too high; "
                "raise the temperature (0.1 is usual) or lower the lr")
