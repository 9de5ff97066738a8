"""ECG augmentations for contrastive pretraining (`augment`) and sampling-rate augmentation (`rate_augment`),
on model inputs [batch, leads, samples] (standardised, time domain), each drawn per record from one
`torch.Generator` (reproducible from the run's seed and epoch). Draws come from the CPU generator and move to
`x`'s device, so a batch on an accelerator gets the same random view as on the CPU.

The set follows Mehari & Strodthoff 2022 (Self-supervised representation learning from 12-lead ECG data; their
SimCLR transformations) with mild strengths, so that two views of a record stay the same ECG: amplitude scaling,
Gaussian noise, baseline wander, lead masking and time masking. Random crops (the other half of a view's
difference) come from `InputPipeline.train_views`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augmentations:
    scale: tuple[float, float] = (0.6, 1.4)  # amplitude factor per record and lead
    noise_sd: float = 0.05  # Gaussian noise, in units of the standardised input
    wander: float = 0.2  # peak baseline wander (0.05-0.5 Hz sinusoid), same units
    lead_mask_p: float = 0.2  # each lead zeroed with this probability (at least one lead kept)
    time_mask: float = 0.1  # fraction of the window zeroed at a random position (all leads)


def augment(x: torch.Tensor, fs: float, generator: torch.Generator, config: Augmentations = Augmentations()
            ) -> torch.Tensor:
    """One random view of every record of `x` [batch, leads, samples]; `x` itself is not changed."""
    batch, leads, samples = x.shape
    device = x.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator).to(device)

    low, high = config.scale
    out = x * (low + (high - low) * uniform(batch, leads, 1))
    out = out + config.noise_sd * torch.randn(batch, leads, samples, generator=generator).to(device)
    t = torch.arange(samples, dtype=torch.float32, device=device) / fs
    frequency = 0.05 + 0.45 * uniform(batch, 1, 1)
    phase = 2 * math.pi * uniform(batch, 1, 1)
    out = out + config.wander * uniform(batch, 1, 1) * torch.sin(2 * math.pi * frequency * t + phase)
    keep = uniform(batch, leads, 1) >= config.lead_mask_p
    keep[keep.sum(dim=1).squeeze(-1) == 0, 0] = True  # never a view without any lead
    out = out * keep
    width = int(round(config.time_mask * samples))
    if width:
        starts = (uniform(batch) * (samples - width + 1)).long()
        positions = torch.arange(samples, device=device)[None, :]
        masked = (positions >= starts[:, None]) & (positions < starts[:, None] + width)
        out = out.masked_fill(masked[:, None, :], 0.0)
    return out


def rate_augment(x: torch.Tensor, fs: float, rates: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Every record of `x` [batch, leads, samples] at `fs` as if recorded at a rate drawn uniformly from `rates`
    (Hz) and resampled back to `fs`: what that round trip keeps is the band below half the drawn rate, so each
    record is low-passed there (an ideal filter on the crop's spectrum; rates at or above `fs` change nothing).
    The training-time counterpart of evaluating on records that arrive at a lower rate (`data.record_fs`)."""
    low, high = rates
    drawn = (low + (high - low) * torch.rand(x.shape[0], generator=generator)).to(x.device)
    spectrum = torch.fft.rfft(x, dim=-1)
    frequencies = torch.fft.rfftfreq(x.shape[-1], d=1.0 / fs, device=x.device)
    keep = frequencies[None, :] <= (drawn[:, None] / 2)
    return torch.fft.irfft(spectrum * keep[:, None, :], n=x.shape[-1], dim=-1)
