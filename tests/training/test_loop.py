"""The training loop: discriminative lrs in the optimiser, resume after a kill, sliding-window inference."""

from __future__ import annotations

import numpy as np
import torch

from ecgtl.data.dataset import LeadScaler, sliding_windows, window_starts
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit


def _fit(prepared, tmp_path, config, **kwargs):
    torch.manual_seed(0)
    model = create_model("xresnet1d18", len(prepared.classes))
    train, val = prepared.split("train"), prepared.split("val")
    pipeline = InputPipeline(fs=prepared.fs, scaler=LeadScaler.fit(train.signals))
    result = fit(model, train, val, config, pipeline, progress=False, **kwargs)
    return model, result


def test_resume_after_kill_equals_uninterrupted_run(prepared_tiny, tmp_path):
    config = TrainConfig(epochs=3, batch_size=16, schedule="gradual", decay=2.0, seed=3)
    straight, straight_result = _fit(prepared_tiny, tmp_path, config, checkpoint_path=tmp_path / "a.pt")
    # "Kill" after the second epoch (its checkpoint is on disk), then resume in a fresh model.
    _fit(prepared_tiny, tmp_path, config, checkpoint_path=tmp_path / "b.pt", stop_after_epoch=1)
    resumed, resumed_result = _fit(prepared_tiny, tmp_path, config, checkpoint_path=tmp_path / "b.pt", resume=True)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert [h.train_loss for h in straight_result.history] == [h.train_loss for h in resumed_result.history]
    assert straight_result.best_epoch == resumed_result.best_epoch


class _Payload:
    """A pickle that runs code when unpickled (what a crafted checkpoint in a shared cache would carry)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_checkpoint_is_refused_on_resume_without_running_its_code(prepared_tiny, tmp_path):
    import pytest

    from ecgtl.errors import EcgtlError

    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "last.pt"
    torch.save({"model": {}, "epoch": 0, "rng": _Payload(marker)}, checkpoint)
    config = TrainConfig(epochs=2, batch_size=16, seed=3)
    with pytest.raises(EcgtlError, match="not a checkpoint that loads safely"):
        _fit(prepared_tiny, tmp_path, config, checkpoint_path=checkpoint, resume=True)
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_values(prepared_tiny, tmp_path):
    config = TrainConfig(epochs=1, batch_size=16, seed=3)
    _fit(prepared_tiny, tmp_path, config, checkpoint_path=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # raises on anything else
    assert state["epoch"] == 0 and state["result"]["best_epoch"] == 0 and len(state["result"]["history"]) == 1


def test_optimizer_uses_discriminative_lrs_per_group(prepared_tiny, tmp_path):
    lrs = []
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-2, decay=2.0, schedule="full")
    _fit(prepared_tiny, tmp_path, config, on_epoch=lambda r: lrs.append(r.lrs))
    ratios = np.array(lrs[0][1:]) / np.array(lrs[0][:-1])
    np.testing.assert_allclose(ratios, 2.0, rtol=1e-6)  # each group 2x the one below it, head highest


def test_window_starts_cover_the_record():
    assert window_starts(1000, 250, 125).tolist() == [0, 125, 250, 375, 500, 625, 750]
    assert window_starts(1000, 300, 125).tolist()[-1] == 700
    assert window_starts(200, 250, 125).tolist() == [0]
    windows, per_record = sliding_windows(np.zeros((2, 12, 1000), dtype=np.float32), 250, 125)
    assert windows.shape == (14, 12, 250) and per_record == 7


class _Echo(torch.nn.Module):
    """Logit = mean of lead I in the window, so aggregation is easy to check by hand."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, :1, :].mean(dim=-1)


def test_max_and_mean_aggregation_ignore_windows_in_padding():
    signal = np.zeros((1, 12, 1000), dtype=np.float32)
    signal[0, 0, 250:500] = 4.0  # the second of four non-overlapping windows
    scaler = LeadScaler(np.zeros(12, np.float32), np.ones(12, np.float32))
    model = _Echo()
    by_max = InputPipeline(fs=100, crop_s=2.5, stride_s=2.5, aggregation="max", scaler=scaler)
    by_mean = InputPipeline(fs=100, crop_s=2.5, stride_s=2.5, aggregation="mean", scaler=scaler)
    assert by_max.predict_logits(model, signal, np.array([1000]))[0, 0] == 4.0
    assert by_mean.predict_logits(model, signal, np.array([1000]))[0, 0] == 1.0
    # Only 250 real samples: windows past them are padding and must not count.
    assert by_max.predict_logits(model, signal, np.array([250]))[0, 0] == 0.0


def test_no_training_batch_holds_a_single_record():
    from ecgtl.data.dataset import batch_bounds

    assert batch_bounds(65, 32) == [(0, 32), (32, 65)]
    assert batch_bounds(64, 32) == [(0, 32), (32, 64)]
    assert batch_bounds(66, 32) == [(0, 32), (32, 64), (64, 66)]
    assert batch_bounds(1, 32) == [(0, 1)] and batch_bounds(5, 32) == [(0, 5)]


def test_fit_keeps_the_best_epochs_validation_logits(prepared_tiny, tmp_path):
    from ecgtl.data.dataset import valid_lengths

    config = TrainConfig(epochs=2, batch_size=16, seed=5)
    model, result = _fit(prepared_tiny, tmp_path, config)
    val = prepared_tiny.split("val")
    pipeline = InputPipeline(fs=prepared_tiny.fs, scaler=LeadScaler.fit(prepared_tiny.split("train").signals))
    np.testing.assert_array_equal(result.best_val_logits, pipeline.predict_logits(model, val.signals, valid_lengths(val)))
