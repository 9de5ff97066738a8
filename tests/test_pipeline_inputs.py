"""The input pipeline: each ablation axis changes what the model actually sees (shape and content)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgtl.data.dataset import LeadScaler
from ecgtl.errors import EcgtlError
from ecgtl.inputs import STANDARD_LEADS, parse_leads
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline


def _identity_scaler(channels: int) -> LeadScaler:
    return LeadScaler(np.zeros(channels, np.float32), np.ones(channels, np.float32))


def _signals(n=3, fs=100.0, seconds=10):
    t = np.arange(int(fs * seconds)) / fs
    # Lead j is a sine of (j + 1) Hz: which lead is where can be read off the content.
    return np.stack([np.stack([np.sin(2 * np.pi * (j + 1) * t) for j in range(12)])] * n).astype(np.float32)


@pytest.mark.parametrize(("leads", "expected"), [
    ("all12", STANDARD_LEADS), ("limb6", STANDARD_LEADS[:6]), ("precordial6", STANDARD_LEADS[6:]),
    ("I,II", ("I", "II")), ("ii", ("II",)), ("V1", ("V1",)), ("V2,I", ("I", "V2")),
])
def test_lead_selection_picks_those_leads_in_standard_order(leads, expected):
    assert parse_leads(leads) == expected
    pipeline = InputPipeline(fs=100, leads=leads, scaler=_identity_scaler(len(expected)))
    windows = _signals()[:, :, :250]
    inputs = pipeline.inputs(windows)
    assert inputs.shape == (3, len(expected), 250)
    for channel, lead in enumerate(expected):
        np.testing.assert_array_equal(inputs[:, channel], windows[:, STANDARD_LEADS.index(lead)])


@pytest.mark.parametrize("bad", ["", "I,I", "X7", "all13"])
def test_bad_lead_selections_are_one_line_errors(bad):
    with pytest.raises(EcgtlError, match="leads"):
        parse_leads(bad)


@pytest.mark.parametrize("domain", ["fft_abs", "fft_real", "fft_imag"])
def test_frequency_domains_are_the_windows_real_fft(domain):
    pipeline = InputPipeline(fs=100, leads="I,II", domain=domain, scaler=_identity_scaler(2))
    windows = _signals()[:, :, :250]
    inputs = pipeline.inputs(windows)
    assert inputs.shape == (3, 2, 126) == (3, 2, pipeline.input_length)
    spectrum = np.fft.rfft(windows[:, :2].astype(np.float64), axis=-1)
    expected = {"fft_abs": np.abs, "fft_real": np.real, "fft_imag": np.imag}[domain](spectrum)
    np.testing.assert_allclose(inputs, expected, atol=1e-3)
    if domain == "fft_abs":  # lead I is a 1 Hz sine: over 2.5 s its energy sits in bin 2.5 -> bins 2 and 3
        assert set(np.argsort(inputs[0, 0])[-2:]) == {2, 3}


@pytest.mark.parametrize("fs", [500.0, 250.0, 100.0, 50.0])
def test_sampling_rate_sets_window_length_and_the_model_runs_on_it(fs):
    pipeline = InputPipeline(fs=fs, leads="limb6")
    signals = _signals(fs=fs)
    fitted = pipeline.fit_scaler(signals, np.full(3, signals.shape[-1]))
    assert fitted.crop == int(2.5 * fs) and fitted.inputs(signals[:, :, :fitted.crop]).shape == (3, 6, int(2.5 * fs))
    model = create_model("xresnet1d18", 4, n_leads=fitted.n_channels)
    torch.manual_seed(0)
    logits = fitted.predict_logits(model, signals)
    assert logits.shape == (3, 4) and np.isfinite(logits).all()


def test_fft_scaler_is_fitted_on_spectra_and_pipelines_round_trip(prepared_tiny):
    from ecgtl.data.dataset import valid_lengths

    train = prepared_tiny.split("train")
    time_domain = InputPipeline(fs=100, leads="II,V1").fit_scaler(train.signals, valid_lengths(train))
    spectral = InputPipeline(fs=100, leads="II,V1", domain="fft_abs").fit_scaler(train.signals, valid_lengths(train))
    assert abs(time_domain.scaler.mean).max() < 0.5 and spectral.scaler.mean.min() > 0  # magnitudes are positive
    batch, labels = next(spectral.train_batches(train, np.arange(len(train)), 16, seed=0, epoch=0))
    assert batch.shape == (16, 2, 126) and labels.shape == (16, len(prepared_tiny.classes))
    assert abs(float(batch.mean())) < 0.5  # standardised
    restored = InputPipeline.from_dict(spectral.to_dict())
    assert restored.to_dict() == spectral.to_dict()


# ------------------------------------------------------------------------------ data.scaling=record
def test_standardise_records_uses_real_samples_only_and_leaves_padding_and_flat_leads_at_zero():
    from ecgtl.data.signal import standardise_records

    rng = np.random.default_rng(0)
    signals = (rng.standard_normal((2, 12, 1000)) * 3 + 5).astype(np.float32)
    signals[1, :, 600:] = 0  # padding
    signals[0, 4] = 2.5  # a flat lead
    out = standardise_records(signals, np.array([1000, 600]))
    np.testing.assert_allclose(out[1, :, :600].mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(out[1, :, :600].std(axis=-1), 1, atol=1e-4)
    assert (out[1, :, 600:] == 0).all() and (out[0, 4] == 0).all() and out.dtype == np.float32


def test_record_scaling_makes_training_and_inference_blind_to_each_records_units():
    """The same records in mV, in µV with an offset, or already standardised: under scaling=record the model sees
    identical inputs in training batches, the fitted scaler and logits (so predict and serving, which call
    predict_logits, agree too); under scaling=dataset it does not."""
    from ecgtl.data.cache import SplitData

    rng = np.random.default_rng(1)
    millivolts = _signals(n=6) * rng.uniform(0.2, 3.0, size=(6, 12, 1)).astype(np.float32)
    rescaled = millivolts * 1000 + 40  # µV with a baseline
    lengths = np.full(6, millivolts.shape[-1])
    labels = np.zeros((6, 4), dtype=np.uint8)
    model = create_model("xresnet1d18", 4, n_leads=12)
    for scaling, same in (("record", True), ("dataset", False)):
        fitted = InputPipeline(fs=100, scaling=scaling).fit_scaler(millivolts, lengths)
        refitted = InputPipeline(fs=100, scaling=scaling).fit_scaler(rescaled, lengths)
        assert np.allclose(fitted.scaler.std, refitted.scaler.std, rtol=1e-3) is same
        batch_mv = next(fitted.train_batches(SplitData(millivolts, labels, pd.DataFrame(index=range(6))), np.arange(6), 6, seed=0, epoch=0))[0]
        batch_uv = next(fitted.train_batches(SplitData(rescaled, labels, pd.DataFrame(index=range(6))), np.arange(6), 6, seed=0, epoch=0))[0]
        assert torch.allclose(batch_mv, batch_uv, atol=1e-3) is same
        torch.manual_seed(0)
        logits_mv, logits_uv = fitted.predict_logits(model, millivolts), fitted.predict_logits(model, rescaled)
        assert np.allclose(logits_mv, logits_uv, atol=1e-3) is same
    restored = InputPipeline.from_dict(fitted.to_dict())
    assert restored.scaling == "dataset" and InputPipeline.from_dict(
        InputPipeline(fs=100, scaling="record").to_dict()).scaling == "record"
    assert InputPipeline.from_dict({k: v for k, v in fitted.to_dict().items() if k != "scaling"}).scaling == "dataset"
    with pytest.raises(EcgtlError, match="scaling must be one of"):
        InputPipeline(fs=100, scaling="lead")


def test_a_model_and_data_that_differ_in_scaling_are_refused_before_training():
    from ecgtl.inputs import InputContract, input_mismatch
    from ecgtl.stages.configs import DataConfig

    assert DataConfig(scaling="record").contract != DataConfig().contract
    assert input_mismatch(DataConfig(scaling="record").contract, DataConfig(fs=50).contract) == ["sampling rate", "scaling"]
    assert input_mismatch(InputPipeline(fs=100).contract, InputContract(100.0, STANDARD_LEADS, "time")) == []
    with pytest.raises(EcgtlError, match="scaling must be one of dataset, record; got 'per-lead'"):
        DataConfig(scaling="per-lead").validate()


def test_long_records_are_scored_in_bounded_window_batches_with_the_same_logits(monkeypatch):
    """One record of an hour went through the model in one pass of ~2 900 windows (gigabytes in serving and
    predict); windows now go in passes of at most MAX_WINDOWS_PER_PASS, with identical logits."""
    import ecgtl.pipeline as pipeline_module

    rng = np.random.default_rng(0)
    signals = rng.standard_normal((3, 12, 6000)).astype(np.float32)  # 60 s each: 47 windows per record
    pipeline = InputPipeline(fs=100).fit_scaler(signals, np.full(3, 6000))
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 4, n_leads=12)
    one_pass = pipeline.predict_logits(model, signals, np.array([6000, 4000, 6000]))
    sizes = []
    monkeypatch.setattr(pipeline_module, "MAX_WINDOWS_PER_PASS", 20)
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    bounded = pipeline.predict_logits(model, signals, np.array([6000, 4000, 6000]))
    handle.remove()
    assert max(sizes) <= 20 and sum(sizes) == 3 * 47
    np.testing.assert_allclose(bounded, one_pass, rtol=1e-5, atol=1e-5)
