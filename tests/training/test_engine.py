"""The one training engine: every feature of the loop works for every registered objective (supervised,
contrastive, cpc) and for a toy third objective that this test registers without touching anything else: mixed
precision on the CPU (the autocast dtype seen in the forward pass), patience, checkpoints and bitwise resume,
every input path to the same weights, the after-epoch hook stopping a run, per-epoch logging under the
objective's names, a non-finite loss stopping the run; and the loop is the only one in ecgtl/."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ecgtl.data.dataset import valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import PretrainConfig
from ecgtl.training.checkpoint import load_checkpoint
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import NonFiniteLoss, fit
from ecgtl.training.objectives import OBJECTIVES, objective_class
from ecgtl.training.objectives.base import Objective, Validation


class Brier(Objective):
    """A toy third objective: the mean squared error of each class's probability (the Brier score), ranked by
    the validation Brier score (lower is better). Nothing outside this class and the test knows it."""

    name = "brier"
    signal = "val_brier"
    higher_is_better = False
    metric_prefix = "brier_"

    def setup(self, model, pipeline, config, device) -> None:
        self.pipeline, self.device = pipeline, device

    def loss(self, network, views, labels, generator):
        return nn.functional.mse_loss(torch.sigmoid(network(views[0]).float()), labels)

    def validate(self, model, val, epoch, last) -> Validation:
        logits = self.pipeline.predict_logits(model, val.signals, valid_lengths(val), device=self.device)
        brier = float(np.mean((1 / (1 + np.exp(-logits)) - val.labels) ** 2))
        return Validation(loss=brier, signal=brier)


@pytest.fixture
def registered(monkeypatch):
    """The built-in objectives plus the toy one, registered as a plugin would (one registry line)."""
    monkeypatch.setitem(OBJECTIVES, Brier.name, Brier)
    return OBJECTIVES


NAMES = [*OBJECTIVES, Brier.name]


def _pipeline(prepared) -> InputPipeline:
    train = prepared.split("train")
    return InputPipeline(fs=prepared.fs).fit_scaler(train.signals, valid_lengths(train))


def _objective(name: str, prepared) -> Objective:
    """The objective as `ecgtl pretrain --objective NAME` builds it (no linear probe: it only costs time here)."""
    train = prepared.split("train")
    config = PretrainConfig(objective=name, probe_every=0)
    return objective_class(name).for_pretraining(config, (train, np.arange(len(train))))


def _fit(prepared, name: str, seed: int = 0, **options):
    """(model, result) of a fit of a fresh xresnet1d18 (torch seeded with `seed`) with objective `name`."""
    fit_options = {k: options.pop(k) for k in ("checkpoint_path", "resume", "on_epoch", "stop_after_epoch",
                                               "objective") if k in options}
    objective = fit_options.pop("objective", None) or _objective(name, prepared)
    torch.manual_seed(seed)
    model = create_model("xresnet1d18", len(prepared.classes))
    config = TrainConfig(**{"epochs": 2, "batch_size": 16, "lr": 3e-3, "seed": 3, **options})
    result = fit(model, prepared.split("train"), prepared.split("val"), config, _pipeline(prepared), objective,
                 progress=False, **fit_options)
    return model, result


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(value, b[key]) for key, value in a.items())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_every_objective_trains_in_mixed_precision_on_the_cpu(prepared_tiny, registered, name, precision, tmp_path):
    seen = []
    model_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    class Watched(type(_objective(name, prepared_tiny))):
        def loss(self, network, views, labels, generator):
            first_conv = next(m for m in network.modules() if isinstance(m, nn.Conv1d))
            handle = first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
            try:
                return super().loss(network, views, labels, generator)
            finally:
                handle.remove()

    objective = _objective(name, prepared_tiny)
    objective.__class__ = Watched
    model, result = _fit(prepared_tiny, name, precision=precision, epochs=1, objective=objective,
                         checkpoint_path=tmp_path / "c.pt")
    assert seen and set(seen) == {model_dtype}  # the forward pass ran under the autocast dtype
    assert np.isfinite(result.history[0].train_loss)
    scaler = load_checkpoint(tmp_path / "c.pt")["grad_scaler"]
    assert bool(scaler) == (precision == "fp16")  # the fp16 loss scale is used (and kept), bf16 needs none


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_stops_early_with_patience_and_keeps_its_best_epoch(prepared_tiny, registered, name):
    objective = _objective(name, prepared_tiny)
    validate = objective.validate
    worse = 1.0 if objective.higher_is_better else -1.0

    def stalled(model, val, epoch, last):  # the real validation, then a signal that never improves again
        return dataclasses.replace(validate(model, val, epoch, last), signal=-worse * epoch)

    objective.validate = stalled
    model, result = _fit(prepared_tiny, name, epochs=6, patience=2, objective=objective)
    assert result.stopped_early and [h.epoch for h in result.history] == [0, 1, 2]
    assert result.best_epoch == 0 and _same_weights(result.best_state, model.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_resumes_after_a_kill_bit_for_bit(prepared_tiny, registered, name, tmp_path):
    whole, straight = _fit(prepared_tiny, name, epochs=3)
    _fit(prepared_tiny, name, epochs=3, checkpoint_path=tmp_path / "c.pt", stop_after_epoch=0)
    resumed, result = _fit(prepared_tiny, name, seed=5, epochs=3, checkpoint_path=tmp_path / "c.pt", resume=True)
    assert _same_weights(whole.state_dict(), resumed.state_dict())
    assert [h.train_loss for h in result.history] == [h.train_loss for h in straight.history]
    assert result.best_epoch == straight.best_epoch


def test_a_checkpoint_of_another_objective_is_refused(prepared_tiny, tmp_path):
    _fit(prepared_tiny, "supervised", epochs=2, checkpoint_path=tmp_path / "c.pt", stop_after_epoch=0)
    with pytest.raises(EcgtlError, match="a checkpoint of objective 'supervised', not 'contrastive'"):
        _fit(prepared_tiny, "contrastive", epochs=2, checkpoint_path=tmp_path / "c.pt", resume=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_reaches_the_same_weights_through_every_input_path(prepared_tiny, registered, name):
    reference, _ = _fit(prepared_tiny, name, device_cache="off", prefetch=0)
    for options in ({"device_cache": "off", "prefetch": 2}, {"device_cache": "on"}):
        model, _ = _fit(prepared_tiny, name, **options)
        assert _same_weights(reference.state_dict(), model.state_dict()), options


class _Pruned(Exception):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_the_after_epoch_hook_stops_every_objective(prepared_tiny, registered, name):
    seen = []

    def prune(result):
        seen.append(result)
        raise _Pruned(f"pruned after epoch {result.epoch + 1}")

    with pytest.raises(_Pruned):
        _fit(prepared_tiny, name, epochs=4, on_epoch=prune)
    assert [r.epoch for r in seen] == [0] and np.isfinite(seen[0].train_loss)


@pytest.mark.parametrize("name", NAMES)
def test_a_non_finite_loss_stops_every_objective_naming_the_epoch(prepared_tiny, registered, name):
    objective = _objective(name, prepared_tiny)
    loss = objective.loss
    objective.loss = lambda *args: None if (value := loss(*args)) is None else value * float("nan")
    with pytest.raises(NonFiniteLoss, match=rf"epoch 1: the {name} training loss is nan \(.+\)"):
        _fit(prepared_tiny, name, epochs=3, objective=objective)


def test_a_tiny_contrastive_temperature_stops_the_run_and_names_the_temperature(prepared_tiny):
    from ecgtl.training.objectives.contrastive import Contrastive

    with pytest.raises(NonFiniteLoss, match="the temperature 1e-300 is probably too low"):
        _fit(prepared_tiny, "contrastive", objective=Contrastive(temperature=1e-300, probe_every=0))


@pytest.mark.parametrize("name", NAMES)
def test_fit_step_logs_every_epoch_under_the_objectives_names(prepared_tiny, registered, name, tmp_path, monkeypatch):
    import mlflow
    from conftest import use_mlflow_store

    from ecgtl import tracking
    from ecgtl.stages.common import FitData, fit_step

    use_mlflow_store(monkeypatch, tmp_path, "engine")
    tracking.configure()
    objective = _objective(name, prepared_tiny)
    torch.manual_seed(0)
    model = create_model("xresnet1d18", len(prepared_tiny.classes))
    train = prepared_tiny.split("train")
    with tracking.stage_run("fit", {}, {}) as run_id:
        fitted = fit_step(model, objective, FitData.of(prepared_tiny, np.arange(len(train))),
                          TrainConfig(epochs=2, batch_size=16, lr=3e-3), _pipeline(prepared_tiny), run_id)
    client = mlflow.MlflowClient()
    metrics = client.get_run(run_id).data.metrics
    for generic in ("train_loss", "val_loss", "epoch_seconds", "trainable_params",
                    *(f"lr_{group}" for group, _ in objective.layer_groups(model))):
        assert [m.step for m in client.get_metric_history(run_id, objective.metric(generic))] == [0, 1], generic
    assert objective.metric("best_epoch") in metrics and objective.metric("n_train_records") in metrics
    # a signal that was never measured (cpc's probe, off here) is not logged as a number
    assert (f"best_{objective.signal}" in metrics) == np.isfinite(fitted.best_signal)
    if name != "supervised":  # its own names: a supervised head can be trained and logged in the same run
        assert "train_loss" not in metrics


def test_the_toy_objective_is_a_valid_pretrain_objective_once_registered(registered):
    assert PretrainConfig(objective="brier").validate().objective == "brier"
    with pytest.raises(EcgtlError, match="objective must be one of supervised, contrastive, cpc, brier; got 'jepa'"):
        PretrainConfig(objective="jepa").validate()


@pytest.mark.slow  # inductor compiles C++ kernels first: 40-110 s per objective on 2 cores
@pytest.mark.parametrize("name", NAMES)
def test_every_objective_trains_compiled(prepared_tiny, registered, name):
    _, result = _fit(prepared_tiny, name, epochs=1, compile=True)
    assert np.isfinite(result.history[0].train_loss)


def test_there_is_one_training_loop_in_ecgtl():
    """`for epoch` over batches with `backward`: one file holds it."""
    root = Path(__file__).resolve().parents[2] / "ecgtl"
    loops = [path.relative_to(root).as_posix() for path in root.rglob("*.py")
             if re.search(r"for epoch in", (text := path.read_text())) and ".backward(" in text]
    assert loops == ["training/loop.py"]


def test_no_function_of_the_stages_takes_more_than_ten_parameters():
    import ast

    root = Path(__file__).resolve().parents[2] / "ecgtl" / "stages"
    counts = {}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
                counts[f"{path.name}:{node.name}"] = len([n for n in names if n not in ("self", "cls")])
    assert max(counts.values()) <= 10, {k: v for k, v in counts.items() if v > 10}
