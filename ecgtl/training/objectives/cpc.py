"""Contrastive predictive coding (Oord, Li & Vinyals 2018; on 12-lead ECGs Mehari & Strodthoff 2022, and the
ECG-CPC encoder that leads AI4HealthUOL's 2026 foundation-model benchmark on PTB-XL): predict what comes next.

Each training window is cut into `segment_s`-second segments. The encoder (every layer group but the head; a CNN
or `s4d`) reads each segment on its own, its pooled features are embedded (a linear layer) into z_t, a GRU runs
causally over z_1 … z_t into a context c_t, and for every k = 1 … `steps` a linear predictor maps c_t to a guess
of z_{t+k}. InfoNCE scores the guess against z_{t+k} of the same record (the positive) and of every other record
of the batch at that step (the negatives; the global batch under torchrun): the loss is the cross-entropy of
picking the positive, averaged over steps and positions.

Why segments, not the last feature map: a CNN's last feature map has 8 steps for a 2.5 s window at 100 Hz, and
each step sees nearly all of it (the receptive field of XResNet1d50 spans the window), as does every step of a
bidirectional S4D. Its "future" would already be in c_t, and the task would shrink to recognising the record.
An encoder that reads each segment alone must predict samples it has not seen: rhythm and beat morphology.

Validation: the InfoNCE on fixed validation windows and the linear probe of every self-supervised objective
(`self_supervised.py`); the probe's validation macro AUC ranks the epochs (the signal: what the encoder is
pretrained for), so an epoch without a probe is never the best one, and without labels the last epoch stands.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ecgtl.errors import EcgtlError
from ecgtl.models.base import EcgModel
from ecgtl.training.objectives.self_supervised import PooledFeatures, SelfSupervised, encoder_groups

if TYPE_CHECKING:
    from ecgtl.data.cache import SplitData
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig

EMBEDDING = 256  # z_t and c_t
MIN_SEGMENT_SAMPLES = 8


def segment_samples(segment_s: float, fs: float) -> int:
    return int(round(segment_s * fs))


def info_nce(predicted: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """InfoNCE of predictions [positions, batch, dim] against the true futures [positions, batch, dim]: at each
    position, record i's prediction is scored (scaled dot product) against every record's future; the positive
    is record i's own, the negatives are the other records' (never its own). Computed in float32."""
    with torch.autocast(predicted.device.type, enabled=False):
        predicted, future = predicted.float(), future.float()
        logits = predicted @ future.transpose(1, 2) / math.sqrt(predicted.shape[-1])  # [positions, batch, batch]
        positions, batch = logits.shape[:2]
        targets = torch.arange(batch, device=logits.device).repeat(positions)
        return nn.functional.cross_entropy(logits.reshape(positions * batch, batch), targets)


class Predictive(nn.Module):
    """What CPC adds to the encoder: the segment embedding, the causal context and one predictor per step."""

    def __init__(self, n_features: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.embedding = nn.Linear(2 * n_features, EMBEDDING)
        self.context = nn.GRU(EMBEDDING, EMBEDDING, batch_first=True)
        self.predictors = nn.Linear(EMBEDDING, steps * EMBEDDING)


class PredictiveNetwork(nn.Module):
    """Windows [batch, channels, length] -> [batch, segments, 1 + steps, dim]: each segment's z_t, then the
    predictions of z_{t+1} … z_{t+steps} from c_t (one tensor, so that torchrun gathers it in one call)."""

    def __init__(self, model: EcgModel, predictive: Predictive, segment: int) -> None:
        super().__init__()
        self.encoder, self.predictive, self.segment = PooledFeatures(model), predictive, segment

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        n = length // self.segment
        segments = x[..., :n * self.segment].reshape(batch, channels, n, self.segment).transpose(1, 2)
        z = self.predictive.embedding(self.encoder(segments.reshape(batch * n, channels, self.segment)))
        z = z.float().reshape(batch, n, -1)
        with torch.autocast(x.device.type, enabled=False):  # a GRU in float32 whatever the autocast
            context, _ = self.predictive.context(z)
            predicted = self.predictive.predictors(context).reshape(batch, n, self.predictive.steps, -1)
        return torch.cat([z[:, :, None], predicted], dim=2)


def cpc_loss(outputs: torch.Tensor) -> torch.Tensor:
    """The mean InfoNCE over steps k and positions t of `PredictiveNetwork`'s outputs."""
    z, predicted = outputs[:, :, 0], outputs[:, :, 1:]
    n, steps = z.shape[1], predicted.shape[2]
    losses = [info_nce(predicted[:, :n - k, k - 1].transpose(0, 1), z[:, k:].transpose(0, 1))
              for k in range(1, steps + 1)]
    return torch.stack(losses).mean()


class CPC(SelfSupervised):
    """CPC over `segment_s`-second segments, predicting `steps` segments ahead; the probe ranks the epochs."""

    name = "cpc"
    signal = "val_probe_macro_auc"
    higher_is_better = True
    time_domain_because = "predicts future segments of time signals"

    def __init__(self, segment_s: float, steps: int, probe_every: int = 1,
                 probe: tuple[SplitData, np.ndarray] | None = None) -> None:
        super().__init__(probe_every, probe)
        self.segment_s, self.steps = segment_s, steps

    @classmethod
    def check_pretraining(cls, config) -> None:
        super().check_pretraining(config)
        samples = segment_samples(config.cpc_segment_s, config.data.fs)
        if samples < MIN_SEGMENT_SAMPLES:
            raise EcgtlError(f"objective=cpc: cpc_segment_s {config.cpc_segment_s:g} s is {samples} samples at "
                             f"{config.data.fs:g} Hz; an encoder needs at least {MIN_SEGMENT_SAMPLES}")
        segments = int(round(config.train.crop_s * config.data.fs)) // samples
        if segments < config.cpc_steps + 1:
            raise EcgtlError(f"objective=cpc: a {config.train.crop_s:g} s crop holds {segments} segments of "
                             f"{config.cpc_segment_s:g} s; predicting cpc_steps {config.cpc_steps} ahead needs "
                             f"{config.cpc_steps + 1} (lengthen train.crop_s or shorten cpc_segment_s)")

    @classmethod
    def for_pretraining(cls, config, labelled: tuple[SplitData, np.ndarray]) -> CPC:
        return cls(segment_s=config.cpc_segment_s, steps=config.cpc_steps, probe_every=config.probe_every,
                   probe=labelled)

    def setup(self, model: EcgModel, pipeline: InputPipeline, config: TrainConfig, device: torch.device) -> None:
        super().setup(model, pipeline, config, device)
        self.segment = segment_samples(self.segment_s, pipeline.fs)
        if pipeline.input_length // self.segment < self.steps + 1:
            raise EcgtlError(f"objective=cpc: windows of {pipeline.input_length} samples hold fewer than "
                             f"{self.steps + 1} segments of {self.segment}")
        self.predictive = Predictive(model.n_features, self.steps).to(device)

    def layer_groups(self, model: EcgModel) -> list[tuple[str, nn.Module]]:
        return [*encoder_groups(model), ("predictive", self.predictive)]

    def modules(self) -> dict[str, nn.Module]:
        return {"predictive": self.predictive}

    def network(self, model: EcgModel) -> nn.Module:
        return PredictiveNetwork(model, self.predictive, self.segment)

    def batch_loss(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return cpc_loss(outputs[0])

    def ranking_signal(self, loss: float, probe: float) -> float:  # noqa: ARG002
        return probe
