"""`label_shift` in evaluate and finetune, through MLflow: a synthetic PTB-XL model applied to synthetic
Georgia, whose class priors differ by construction."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_val_logits_are_the_logged_models, store_trained_once, use_store_copy

from ecgtl.errors import EcgtlError
from ecgtl.evaluation.report import metric_class_name
from ecgtl.stages.configs import DataConfig, EvaluateConfig, FinetuneConfig, PretrainConfig
from ecgtl.training.config import TrainConfig

TARGET = "synthetic:g12ec?n=80&seed=2"


@pytest.fixture(scope="module")
def prepared_store(tmp_path_factory):
    from ecgtl.stages.pretrain import pretrain

    folder, _ = store_trained_once(tmp_path_factory, "label-shift", lambda: pretrain(PretrainConfig(
        data=DataConfig(spec="synthetic:ptbxl?n=120&seed=1"), model="xresnet1d18",
        train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20)))
    return folder


@pytest.fixture
def store(prepared_store, tmp_path, monkeypatch):
    import mlflow

    from ecgtl import tracking

    use_store_copy(monkeypatch, prepared_store, tmp_path / "store", "label-shift")
    tracking.configure()
    yield mlflow.MlflowClient()
    if mlflow.active_run():
        mlflow.end_run()


def test_evaluate_prior_and_em_keep_auc_and_log_the_priors(store):
    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig
    from ecgtl.stages.evaluate import evaluate

    base = EvaluateConfig(model_uri="models:/ecgtl-pretrained@champion", spec=TARGET, n_bootstrap=20)
    results = {method: evaluate(EvaluateConfig(**{**base.__dict__, "label_shift": method}))
               for method in ("none", "prior", "em")}
    plain = results["none"].metrics
    target_train = prepare(PrepareConfig(spec=TARGET)).split("train")
    for method in ("prior", "em"):
        metrics = results[method].metrics
        per_class = [k for k in plain if k.startswith("test_auc_") and not k.endswith(("_ci_low", "_ci_high"))]
        assert per_class and all(metrics[k] == pytest.approx(plain[k], abs=1e-6) for k in per_class)
        assert store.get_run(results[method].run_id).data.tags["ecgtl.label_shift"] == method
        assert any(k.startswith("test_prior_source_") for k in metrics)
        assert metrics["test_ece"] != pytest.approx(plain["test_ece"], abs=1e-9)
    expected = np.clip(target_train.labels.mean(axis=0), 1e-4, 1 - 1e-4)
    for name, prior in zip(prepare(PrepareConfig(spec=TARGET)).classes, expected, strict=True):
        assert results["prior"].metrics[f"test_prior_target_{metric_class_name(name)}"] == pytest.approx(prior)
    assert results["em"].metrics["test_label_shift_em_iterations"] >= 1
    import tempfile
    from pathlib import Path

    from ecgtl import tracking
    from ecgtl.inference import load_bundle

    with tempfile.TemporaryDirectory() as tmp:  # EM reads the bias-corrected (per-class Platt) posteriors
        _, info = load_bundle(tracking.download_model(base.model_uri, Path(tmp)))
    assert info.posterior_calibrator["method"] == "platt" and len(info.train_priors) == len(info.classes)


def test_finetune_label_shift_variants_log_their_priors_and_refuse_nonsense(store, tmp_path):
    from ecgtl.stages.finetune import finetune

    tiny = FinetuneConfig(data=DataConfig(spec=TARGET), pretrained="models:/ecgtl-pretrained@champion",
                          train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20)
    for method, head in (("prior", "reuse"), ("em", "reuse"), ("reweight", "new")):
        result = finetune(FinetuneConfig(**{**tiny.__dict__, "label_shift": method, "head": head}), register=False)
        run = store.get_run(result.run_id)
        assert run.info.status == "FINISHED" and run.data.tags["ecgtl.label_shift"] == method
        sources = {k: v for k, v in run.data.metrics.items() if k.startswith("train_prior_source_")}
        targets = {k: v for k, v in run.data.metrics.items() if k.startswith("train_prior_target_")}
        assert sources and len(sources) == len(targets)
        assert any(abs(sources[k] - targets[k.replace("source", "target")]) > 0.01 for k in sources)
        # the logged model's, also after `reweight` moved the outputs (not the fit's)
        assert_val_logits_are_the_logged_models(result.run_id, tiny.data, tmp_path / method)
    with pytest.raises(EcgtlError, match="head=reuse"):
        FinetuneConfig(label_shift="prior").validate()
    with pytest.raises(EcgtlError, match="init=scratch"):
        FinetuneConfig(init="scratch", label_shift="reweight").validate()
    with pytest.raises(EcgtlError, match="calibration_fraction"):
        EvaluateConfig(label_shift="em", calibration_fraction=0.5).validate()


def test_label_shift_plan_moves_the_reused_head_by_the_offsets():
    """`prior` adds exactly logit(target) - logit(source) to the reused head's bias; `reweight` leaves the bias
    and hands the weights and offsets to training."""
    import torch

    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig
    from ecgtl.evaluation.label_shift import loss_weights, prior_offsets
    from ecgtl.inference import BundleInfo
    from ecgtl.models import create_model
    from ecgtl.stages.finetune import StartingPoint, label_shift_plan

    prepared = prepare(PrepareConfig(spec=TARGET))
    classes = list(prepared.classes)
    rows = np.arange(len(prepared.split("train")))
    source = np.linspace(0.02, 0.4, len(classes))
    info = BundleInfo("xresnet1d18", classes[::-1], "shared18", {}, train_priors=list(source[::-1]))

    def start() -> StartingPoint:
        torch.manual_seed(0)
        return StartingPoint(create_model("xresnet1d18", len(classes)), "xresnet1d18", False, [], "models:/x", "ptbxl",
                             info)

    target = prepared.split("train").labels.mean(axis=0)
    moved, before = start(), start().model.head[-1].bias.detach().clone()
    plan = label_shift_plan(FinetuneConfig(label_shift="prior", head="reuse"), moved, prepared, rows)
    np.testing.assert_allclose((moved.model.head[-1].bias.detach() - before).numpy(), prior_offsets(source, target),
                               rtol=1e-5, atol=1e-5)
    assert plan.loss_weights is None and plan.output_offsets is None
    kept = start()
    plan = label_shift_plan(FinetuneConfig(label_shift="reweight"), kept, prepared, rows)
    assert torch.equal(kept.model.head[-1].bias.detach(), before)
    np.testing.assert_allclose(plan.loss_weights[0], loss_weights(source, target)[0])
    np.testing.assert_allclose(plan.output_offsets, prior_offsets(source, target))
