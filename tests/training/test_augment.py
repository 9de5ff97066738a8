"""Sampling-rate augmentation: what a round trip through a lower rate keeps, reproducibly."""

from __future__ import annotations

import numpy as np
import torch

from ecgtl.training.augment import rate_augment


def tones(fs: float, seconds: float, *frequencies: float) -> torch.Tensor:
    t = torch.arange(int(fs * seconds)) / fs
    return torch.stack([torch.sin(2 * np.pi * f * t) for f in frequencies])[None].float()  # [1, tones, samples]


def amplitude(x: torch.Tensor, fs: float, frequency: float) -> np.ndarray:
    spectrum = torch.fft.rfft(x, dim=-1).abs() / (x.shape[-1] / 2)
    return spectrum[..., int(round(frequency * x.shape[-1] / fs))].numpy()


def test_a_drawn_rate_keeps_what_lies_below_its_nyquist_and_nothing_above():
    x = tones(100.0, 10.0, 5.0, 20.0, 40.0).repeat(64, 1, 1)
    out = rate_augment(x, 100.0, (50.0, 70.0), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(amplitude(out[:, 0], 100.0, 5.0), 1.0, atol=1e-4)  # below every drawn Nyquist
    np.testing.assert_allclose(amplitude(out[:, 1], 100.0, 20.0), 1.0, atol=1e-4)
    np.testing.assert_allclose(amplitude(out[:, 2], 100.0, 40.0), 0.0, atol=1e-4)  # above every one (25-35 Hz)
    mixed = rate_augment(tones(100.0, 10.0, 30.0).repeat(256, 1, 1), 100.0, (50.0, 70.0),
                         torch.Generator().manual_seed(0))
    kept = amplitude(mixed[:, 0], 100.0, 30.0)
    assert 0.2 < (kept > 0.5).mean() < 0.8  # 30 Hz survives rates above 60 Hz only: about half of them


def test_rates_at_or_above_the_model_rate_change_nothing_and_the_generator_decides_the_rest():
    x = torch.randn(8, 12, 250)
    np.testing.assert_allclose(rate_augment(x, 100.0, (100.0, 500.0), torch.Generator().manual_seed(1)).numpy(),
                               x.numpy(), atol=1e-5)
    first = rate_augment(x, 100.0, (50.0, 100.0), torch.Generator().manual_seed(2))
    again = rate_augment(x, 100.0, (50.0, 100.0), torch.Generator().manual_seed(2))
    other = rate_augment(x, 100.0, (50.0, 100.0), torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_fit_with_an_augmentation_is_reproducible_and_differs_from_without(prepared_tiny):
    from ecgtl.data.dataset import LeadScaler
    from ecgtl.models import create_model
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.loop import fit
    from ecgtl.training.objectives.supervised import Supervised

    train, val = prepared_tiny.split("train"), prepared_tiny.split("val")
    pipeline = InputPipeline(fs=prepared_tiny.fs, scaler=LeadScaler.fit(train.signals))
    config = TrainConfig(epochs=2, batch_size=16, seed=3)

    def losses(augment):
        torch.manual_seed(0)
        model = create_model("xresnet1d18", len(prepared_tiny.classes))
        objective = Supervised(augment=augment)
        return [h.train_loss for h in fit(model, train, val, config, pipeline, objective, progress=False).history]

    def low_pass(x, generator):
        return rate_augment(x, prepared_tiny.fs, (50.0, 60.0), generator)

    assert losses(low_pass) == losses(low_pass)
    assert losses(low_pass) != losses(None)
