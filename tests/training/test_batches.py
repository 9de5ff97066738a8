"""The engine's input paths: a device-resident split (here the "device" is the CPU) and background prefetch
cut the same batches as the pipeline's numpy path, and a fit through either reaches the same weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ecgtl.data.dataset import valid_lengths
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.accelerator import grad_scaler, resolve_precision, use_device_cache
from ecgtl.training.batches import ResidentSplit, TrainInputs, prefetched
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit

CPU = torch.device("cpu")


def _pipeline(prepared, **options) -> InputPipeline:
    train = prepared.split("train")
    return InputPipeline(fs=prepared.fs, **options).fit_scaler(train.signals, valid_lengths(train))


@pytest.mark.parametrize("options", [{}, {"scaling": "record", "leads": ("I", "II", "V1")}])
def test_resident_batches_are_the_pipelines_batches_bit_for_bit(prepared_tiny, options):
    pipeline, train = _pipeline(prepared_tiny, **options), prepared_tiny.split("train")
    rows = np.arange(1, len(train), 2)  # a subset (a target fraction), whose last batch joins the one before
    resident = TrainInputs(pipeline, train, rows, CPU, device_cache="on")
    assert resident.resident is not None and "resident" in resident.describe()
    for epoch in (0, 1):
        expected = list(pipeline.train_views(train, rows, 9, 3, epoch, n_views=2))
        got = list(resident.epoch(9, 3, epoch, n_views=2))
        assert len(got) == len(expected) > 1
        for (views, labels), (want_views, want_labels) in zip(got, expected, strict=True):
            assert torch.equal(labels, want_labels)
            for view, want in zip(views, want_views, strict=True):
                assert view.dtype == torch.float32 and torch.equal(view, want)


def test_resident_fft_inputs_match_the_pipelines(prepared_tiny):
    pipeline, train = _pipeline(prepared_tiny, domain="fft_abs"), prepared_tiny.split("train")
    rows = np.arange(len(train))
    got = next(iter(TrainInputs(pipeline, train, rows, CPU, device_cache="on").epoch(16, 0, 0)))
    want = next(iter(pipeline.train_batches(train, rows, 16, 0, 0)))
    assert got[0][0].shape == want[0].shape
    torch.testing.assert_close(got[0][0], want[0], rtol=1e-4, atol=1e-4)


def test_prefetched_batches_keep_their_order_and_the_thread_stops_with_the_consumer(prepared_tiny):
    pipeline, train = _pipeline(prepared_tiny), prepared_tiny.split("train")
    rows = np.arange(len(train))
    inputs = TrainInputs(pipeline, train, rows, CPU, device_cache="off", prefetch=2)
    assert inputs.resident is None and "background thread" in inputs.describe()
    for (x, y), (want_x, want_y) in zip(inputs.epoch(8, 5, 2), pipeline.train_batches(train, rows, 8, 5, 2), strict=True):
        assert torch.equal(x[0], want_x) and torch.equal(y, want_y)
    before = threading.active_count()
    batches = inputs.epoch(8, 5, 0)
    next(batches)
    assert threading.active_count() == before + 1
    batches.close()  # the consumer stops early (a pruned trial)
    assert threading.active_count() == before


def test_an_error_while_prefetching_reaches_the_training_thread():
    def failing():
        yield 1
        raise RuntimeError("the memmap went away")

    items = prefetched(failing(), depth=2)
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="memmap went away"):
        next(items)


def _fit_weights(prepared, **train_options):
    torch.manual_seed(0)
    model = create_model("xresnet1d18", len(prepared.classes))
    train, val = prepared.split("train"), prepared.split("val")
    config = TrainConfig(**{"epochs": 2, "batch_size": 16, "schedule": "gradual", "seed": 3, **train_options})
    result = fit(model, train, val, config, _pipeline(prepared), progress=False)
    return model.state_dict(), [h.train_loss for h in result.history]


def test_fit_reaches_the_same_weights_through_every_input_path(prepared_tiny):
    on_thread, losses = _fit_weights(prepared_tiny, device_cache="off", prefetch=0)
    for options in ({"device_cache": "off", "prefetch": 2}, {"device_cache": "on"}):
        state, path_losses = _fit_weights(prepared_tiny, **options)
        for key, value in on_thread.items():
            assert torch.equal(value, state[key]), (options, key)
        assert path_losses == losses


def test_precision_and_device_cache_policies():
    assert resolve_precision("auto", CPU) == "fp32"  # CPU results stay what they were
    assert resolve_precision("bf16", CPU) == "bf16"
    assert grad_scaler(CPU, "fp16").is_enabled() and not grad_scaler(CPU, "bf16").is_enabled()
    assert not use_device_cache("auto", CPU, 1)  # the CPU already holds the memmap
    assert use_device_cache("on", CPU, 1 << 40) and not use_device_cache("off", CPU, 1)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu(prepared_tiny, precision):
    state, losses = _fit_weights(prepared_tiny, precision=precision, epochs=1)
    reference, _ = _fit_weights(prepared_tiny, epochs=1)
    assert np.isfinite(losses).all()
    assert any(not torch.equal(value, reference[key]) for key, value in state.items() if value.is_floating_point())


def test_an_fp16_run_resumes_with_its_loss_scale_to_the_uninterrupted_result(prepared_tiny, tmp_path):
    from ecgtl.training.checkpoint import load_checkpoint

    def run(checkpoint, **options):
        torch.manual_seed(0)
        model = create_model("xresnet1d18", len(prepared_tiny.classes))
        config = TrainConfig(epochs=3, batch_size=16, seed=3, precision="fp16")
        fit(model, prepared_tiny.split("train"), prepared_tiny.split("val"), config, _pipeline(prepared_tiny),
            progress=False, checkpoint_path=checkpoint, **options)
        return load_checkpoint(checkpoint)["model"]  # the last epoch's weights (fit returns the best epoch's)

    straight = run(tmp_path / "a.pt")
    run(tmp_path / "b.pt", stop_after_epoch=0)
    # The same checkpoint with another loss scale (3: not a power of two, so scaling and unscaling round): a
    # resume that reads the scale trains differently from it, one that ignored it would not.
    other_scale = load_checkpoint(tmp_path / "b.pt")
    other_scale["grad_scaler"]["scale"] = 3.0
    torch.save(other_scale, tmp_path / "c.pt")
    resumed, rescaled = run(tmp_path / "b.pt", resume=True), run(tmp_path / "c.pt", resume=True)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    assert any(not torch.equal(value, rescaled[key]) for key, value in resumed.items() if value.is_floating_point())


def test_resident_split_refuses_a_pipeline_without_a_scaler(prepared_tiny):
    train = prepared_tiny.split("train")
    with pytest.raises(ValueError, match="scaler"):
        ResidentSplit(InputPipeline(fs=prepared_tiny.fs), train, np.arange(len(train)), CPU)


@pytest.mark.slow  # inductor compiles C++ kernels first: 40-110 s on 2 cores (its cache warm or cold)
def test_compiled_training_steps_learn(prepared_tiny):
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in create_model("xresnet1d18", len(prepared_tiny.classes)).state_dict().items()}
    state, losses = _fit_weights(prepared_tiny, compile=True, epochs=1)
    assert np.isfinite(losses).all()
    assert any(not torch.equal(value, initial[key]) for key, value in state.items() if value.is_floating_point())
