"""S4D through the stages, as any architecture: pretrained and fine-tuned with every schedule, explained, served,
exported to ONNX with parity, and evaluated on records at another rate, resampled or read natively (a CNN
refuses the latter with one line)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import store_trained_once, use_store_copy

from ecgtl.stages.configs import DataConfig, EvaluateConfig, FinetuneConfig, PretrainConfig
from ecgtl.training.config import SCHEDULES, TrainConfig

SOURCE, TARGET = "synthetic:ptbxl?n=80&seed=6&rates=100,500", "synthetic:g12ec?n=80&seed=6"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from ecgtl.stages.pretrain import pretrain

    def build():
        return pretrain(PretrainConfig(data=DataConfig(spec=SOURCE), model="s4d_small", n_bootstrap=20,
                                       train=TrainConfig(epochs=2, batch_size=16, lr=3e-3, explain_examples=0)))

    return store_trained_once(tmp_path_factory, "s4d", build)


@pytest.fixture
def store(pretrained, tmp_path, monkeypatch):
    folder, result = pretrained
    use_store_copy(monkeypatch, folder, tmp_path, "s4d")
    return result


@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s != "frozen"])
def test_an_s4d_encoder_fine_tunes_with_every_schedule(store, schedule):
    from ecgtl.stages.finetune import finetune

    result = finetune(FinetuneConfig(data=DataConfig(spec=TARGET), pretrained=store.model_uri, n_bootstrap=20,
                                     train=TrainConfig(epochs=2, batch_size=16, schedule=schedule,
                                                       explain_examples=0)), register=False)
    assert 0 <= result.metrics["test_macro_auc"] <= 1


def test_an_s4d_model_is_explained_served_and_exported_with_parity(store, tmp_path):
    import mlflow

    from ecgtl import tracking
    from ecgtl.explain import explain_record
    from ecgtl.export import export
    from ecgtl.inference import load_bundle

    model, info = load_bundle(tracking.download_model(store.model_uri, tmp_path / "bundle"))
    signals = np.random.default_rng(0).normal(0, 0.3, (4, 12, 1000)).astype(np.float32)
    explanation = explain_record(model, info.input_pipeline(), signals[0], 0, steps=8)
    assert np.isfinite(explanation.attributions).all() and explanation.lead_importance.sum() == pytest.approx(1)
    served = mlflow.pyfunc.load_model(store.model_uri).predict(signals).to_numpy()
    assert served.shape == (4, len(info.classes)) and np.isfinite(served).all()
    pytest.importorskip("onnxscript")
    from ecgtl.onnx_runner import OnnxPipeline

    export(store.model_uri, tmp_path / "onnx")
    probabilities, _ = OnnxPipeline(tmp_path / "onnx").predict(signals)
    np.testing.assert_allclose(probabilities, served, atol=1e-4)


def test_records_at_another_rate_are_read_natively_by_s4d_and_refused_by_a_cnn(store):
    from ecgtl.errors import EcgtlError
    from ecgtl.stages.evaluate import evaluate
    from ecgtl.stages.finetune import finetune

    config = EvaluateConfig(model_uri=store.model_uri, spec=SOURCE, n_bootstrap=20, explain_examples=0,
                            record_fs=500.0)
    native = evaluate(EvaluateConfig(**{**config.__dict__, "rate_policy": "native"}))
    resampled = evaluate(config)
    at_own_rate = evaluate(EvaluateConfig(**{**config.__dict__, "record_fs": 0.0}))
    for result in (native, resampled):
        assert abs(result.metrics["test_macro_auc_all_classes"] - at_own_rate.metrics["test_macro_auc_all_classes"]) < 0.15
    cnn = finetune(FinetuneConfig(data=DataConfig(spec=TARGET), init="scratch", model="xresnet1d18", n_bootstrap=20,
                                  train=TrainConfig(epochs=1, batch_size=16, explain_examples=0)), register=False)
    with pytest.raises(EcgtlError, match="reads records only at its own rate; use rate_policy=resample"):
        evaluate(EvaluateConfig(model_uri=cnn.model_uri, spec=TARGET, record_fs=500.0, rate_policy="native"))
