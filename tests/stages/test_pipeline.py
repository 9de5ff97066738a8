"""End to end through MLflow (temporary sqlite store): pretrain -> finetune with registry aliases, pyfunc
prediction from raw signals, reuse in `main`, evaluate on real files, FAILED/KILLED runs, atomic registration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_val_logits_are_the_logged_models, use_mlflow_store, use_store_copy

from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig
from ecgtl.stages.finetune import finetune, scratch_config
from ecgtl.training.config import TrainConfig


def tiny_pretrain() -> PretrainConfig:
    return PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=80&seed=1"), model="xresnet1d18",
                          train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20)


def tiny_finetune(**changes) -> FinetuneConfig:
    return FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=60&seed=2", **changes), model="xresnet1d18",
                          train=TrainConfig(epochs=2, batch_size=32, schedule="gradual", decay=2.0), n_bootstrap=20)


@pytest.fixture(scope="module")
def prepared_store(tmp_path_factory):
    """A store with one finished finetune (which pretrained automatically), trained once per module."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        use_mlflow_store(patch, folder, "pipeline-test", cache=True)
        first = finetune(tiny_finetune(), fallback_pretrain=tiny_pretrain())
        if mlflow.active_run():
            mlflow.end_run()
    return folder, first


@pytest.fixture
def store(prepared_store, tmp_path, monkeypatch):
    """This test's own copy of the prepared store: what it registers or moves no other test sees."""
    import mlflow

    from ecgtl import tracking

    prepared, first = prepared_store
    use_store_copy(monkeypatch, prepared, tmp_path / "store", "pipeline-test")
    tracking.configure()
    yield {"folder": tmp_path / "store", "first": first, "client": mlflow.MlflowClient()}
    if mlflow.active_run():
        mlflow.end_run()


def test_finetune_pretrains_first_as_a_nested_run_and_registers_both(store):
    client, first = store["client"], store["first"]
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runName"] == "finetune-xresnet1d18-g12ec-f1.00-s0"
    for key, value in {"ecgtl.stage": "finetune", "ecgtl.init": "pretrained", "ecgtl.target": "g12ec",
                       "ecgtl.source": "ptbxl", "ecgtl.label_set": "shared18", "ecgtl.fs": "100",
                       "ecgtl.schedule": "gradual"}.items():
        assert run.data.tags[key] == value, key
    assert run.data.params["train.schedule"] == "gradual" and run.data.params["data.fraction"] == "1.0"
    assert "test_macro_auc" in run.data.metrics and "test_ece_temperature" in run.data.metrics
    history = client.get_metric_history(first.run_id, "val_macro_auc")
    assert [m.step for m in history] == [0, 1]
    trainable = [m.value for m in client.get_metric_history(first.run_id, "trainable_params")]
    assert trainable[0] < trainable[1]  # gradual unfreezing
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{first.run_id}'")
    assert [c.data.tags["ecgtl.stage"] for c in children] == ["pretrain"]
    assert children[0].info.status == "FINISHED"
    for name in ("ecgtl-pretrained", "ecgtl-finetuned"):
        version = client.get_model_version_by_alias(name, "champion")
        assert str(version.version) == "1" and str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    assert "evaluation/report.html" in artifacts


def test_the_reports_val_logits_are_what_the_logged_model_computes(store):
    """The report reuses the fit's validation logits of the best epoch instead of a second inference: for the
    fine-tuned model and for its nested pretraining they equal what the logged model computes on the val split."""
    client, first = store["client"], store["first"]
    run = client.get_run(first.run_id)
    nested = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{first.run_id}'")[0]
    for run_id, data in ((first.run_id, tiny_finetune().data), (nested.info.run_id, tiny_pretrain().data)):
        assert_val_logits_are_the_logged_models(run_id, data, store["folder"] / run_id)


def test_a_new_version_is_challenger_and_champion_stays(store):
    client = store["client"]
    second = finetune(tiny_finetune(fraction=0.5))
    assert second.version == 2
    # The training records changed, the test records did not: so did and did not their digests.
    before, after = _datasets(client, store["first"].run_id), _datasets(client, second.run_id)
    assert before["training"][1] != after["training"][1] and before["testing"][1] == after["testing"][1]
    assert str(client.get_model_version_by_alias("ecgtl-finetuned", "challenger").version) == "2"
    assert str(client.get_model_version_by_alias("ecgtl-finetuned", "champion").version) == "1"
    assert client.get_run(second.run_id).data.metrics["n_train_records"] < client.get_run(store["first"].run_id).data.metrics["n_train_records"]


def test_pyfunc_predicts_from_raw_millivolt_signals(store):
    import mlflow

    from ecgtl.data.records import read_record
    from ecgtl.data.signal import resample
    from ecgtl.data.sources import open_source
    from ecgtl.inference import Predictor
    from ecgtl.tracking import download_model

    source = open_source("synthetic:g12ec?n=60&seed=2")
    raw = [read_record(path) for path in source.index["header_path"][:3]]
    signals = np.stack([resample(r.signal, r.fs, 100) for r in raw])  # 500 Hz files -> the model's 100 Hz
    model = mlflow.pyfunc.load_model("models:/ecgtl-finetuned@champion")
    predictions = model.predict(signals)
    assert predictions.shape == (3, 18) and list(predictions.columns)[:2] == ["1AVB", "CRBBB"]
    assert ((predictions.to_numpy() >= 0) & (predictions.to_numpy() <= 1)).all()
    direct = Predictor(download_model("models:/ecgtl-finetuned@champion", store["folder"] / "dl")).predict_proba(signals)
    np.testing.assert_allclose(predictions.to_numpy(), direct, rtol=1e-5)


def test_main_reuses_finished_steps(store):
    from ecgtl.stages.configs import MainConfig
    from ecgtl.stages.main import main

    config = MainConfig(pretrain=tiny_pretrain(), finetune=tiny_finetune(), n_bootstrap=20)
    first = main(config)
    assert first["difference"].n_resamples > 0
    again = main(config)
    assert all(again[name].reused for name in ("pretrained (source test)", "fine-tuned", "scratch"))
    assert again["fine-tuned"].run_id == first["fine-tuned"].run_id


def test_a_fresh_process_finds_a_finished_run_to_reuse_before_anything_chose_the_experiment(store):
    """A benchmark or script that calls `reuse_or_run` first, without MLFLOW_EXPERIMENT_NAME: MLflow's own current
    experiment is then `Default`, where no stage logs; the search must look where `configure` puts runs (`ecgtl`)."""
    import json
    import os
    import subprocess
    import sys

    from ecgtl.config import flatten

    client = store["client"]
    experiment = client.get_experiment_by_name("pipeline-test").experiment_id
    client.rename_experiment(experiment, "ecgtl")  # this test's own copy of the store
    found = client.search_runs([experiment], "tags.`ecgtl.stage` = 'pretrain'")
    script = ("import json, sys; from ecgtl.config import build; from ecgtl.stages.configs import PretrainConfig; "
              "from ecgtl.stages.reuse import finished_run; "
              "print(finished_run('pretrain', build(PretrainConfig, json.loads(sys.argv[1]))))")
    # MLflow's current experiment is another one (in a fresh sqlite store, `Default`)
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_NAME"},
           "MLFLOW_EXPERIMENT_ID": client.create_experiment("elsewhere")}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(flatten(tiny_pretrain()))], env=env,
                          capture_output=True, text=True, check=True, cwd=store["folder"])
    assert done.stdout.strip() == found[0].info.run_id


def test_evaluate_any_model_on_real_cinc_files(store, shared_samples):
    from ecgtl.stages.configs import EvaluateConfig
    from ecgtl.stages.evaluate import evaluate

    result = evaluate(EvaluateConfig(model_uri="models:/ecgtl-finetuned@champion",
                                     spec=f"cinc:{shared_samples / 'cinc2021-smoke'}", split="all", n_bootstrap=20))
    assert result.metrics["test_n_records"] == 70 and 0 <= result.metrics["test_macro_auc"] <= 1
    inputs = store["client"].get_run(result.run_id).inputs.dataset_inputs
    assert {_context(i) for i in inputs} == {"testing"}
    assert sum(json.loads(i.dataset.profile)["records"] for i in inputs) == 70


def _context(dataset_input) -> str:
    return next(tag.value for tag in dataset_input.tags if tag.key == "mlflow.data.context")


def _datasets(client, run_id: str) -> dict:
    """context -> (name, digest, profile) of a run's logged datasets."""
    return {_context(i): (i.dataset.name, i.dataset.digest, json.loads(i.dataset.profile))
            for i in client.get_run(run_id).inputs.dataset_inputs}


def test_a_finetune_logs_its_datasets_and_they_agree_with_the_leak_guard(store):
    from ecgtl.inference import BUNDLE_JSON, BundleInfo, find_bundle
    from ecgtl.tracking import download_model

    client, first = store["client"], store["first"]
    datasets = _datasets(client, first.run_id)
    assert set(datasets) == {"training", "validation", "testing", "source"}
    name, digest, profile = datasets["training"]
    assert name == "g12ec/train" and len(digest) == 16
    assert profile["records"] == client.get_run(first.run_id).data.metrics["n_train_records"]
    assert profile["fs"] == 100.0 and profile["samples"] == 1000 and len(profile["leads"]) == 12
    assert len(profile["classes"]) == 18 and sum(profile["classes"].values()) > 0
    folder = find_bundle(download_model(first.model_uri, store["folder"] / "b"))
    bundle = BundleInfo.from_json(json.loads((folder / BUNDLE_JSON).read_text()))
    # The leak guard's record fingerprints are the datasets' own: the target's and, inherited, the source's.
    fingerprints = [t["fingerprint"] for t in bundle.training]
    assert datasets["training"][2]["record_fingerprint"] == fingerprints[-1]
    assert datasets["source"][2]["record_fingerprint"] == fingerprints[0] and datasets["source"][0] == "ptbxl/train"
    pretrain_run = client.search_runs([client.get_run(first.run_id).info.experiment_id],
                                      "tags.`ecgtl.stage` = 'pretrain'")[0]
    assert _datasets(client, pretrain_run.info.run_id)["training"][2]["record_fingerprint"] == fingerprints[0]


def test_the_registered_version_carries_its_model_card_and_datasets(store):
    from click.testing import CliRunner

    from ecgtl.cli import cli

    client = store["client"]
    version = client.get_model_version("ecgtl-finetuned", "1")
    card = version.description
    for text in ("Not a medical device", "## Data", "g12ec/train", "## Input contract", "100 Hz", "Macro AUC",
                 "ECE", "temperature", "## Promotion", "synthetic data only", "| LVH |"):
        assert text in card, text
    datasets = _datasets(client, store["first"].run_id)
    assert version.tags["ecgtl.dataset.training"] == f"g12ec/train@{datasets['training'][1]}"
    assert f"`{datasets['testing'][1]}`" in card
    artifacts = {a.path for a in client.list_artifacts(store["first"].run_id)}
    assert "model_card.md" in artifacts
    shown = CliRunner().invoke(cli, ["models", "show", "models:/ecgtl-finetuned@champion"])
    assert shown.exit_code == 0 and shown.output.strip() == card.strip()
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert "registered ecgtl-finetuned: v1 (challenger, champion)" in listed.output
    bad = CliRunner().invoke(cli, ["models", "show", "runs:/abc/model"])
    assert bad.exit_code == 2 and "name a registered version" in bad.output


def test_system_metrics_are_logged_when_asked(store, monkeypatch):
    from dataclasses import replace

    from ecgtl import tracking
    from ecgtl.errors import EcgtlError

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    config = scratch_config(tiny_finetune())
    result = finetune(replace(config, train=replace(config.train, system_metrics=True, epochs=3)), register=False)
    metrics = store["client"].get_run(result.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
    plain = finetune(config, register=False)
    assert not any(k.startswith("system/") for k in store["client"].get_run(plain.run_id).data.metrics)
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real_find_spec(name, *a))
    with pytest.raises(EcgtlError, match=r"system metrics need psutil: pip install 'ecgtl\[system\]'"):
        tracking.check_system_metrics()


def test_failed_run_is_marked_failed_and_registers_nothing(store, monkeypatch):
    import ecgtl.stages.common as common

    def broken_fit(*args, **kwargs):
        raise RuntimeError("injected failure")

    client = store["client"]
    versions_before = len(client.search_model_versions("name='ecgtl-scratch'"))
    monkeypatch.setattr(common, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="injected failure"):
        finetune(scratch_config(tiny_finetune()))
    run = client.search_runs([client.get_experiment_by_name("pipeline-test").experiment_id],
                             "tags.`ecgtl.stage` = 'scratch'", order_by=["attributes.start_time DESC"])[0]
    assert run.info.status == "FAILED" and "injected failure" in run.data.tags["ecgtl.error"]
    assert len(client.search_model_versions("name='ecgtl-scratch'")) == versions_before


def test_interrupted_run_is_marked_killed(store, monkeypatch):
    import ecgtl.stages.common as common

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_finetune(fraction=0.3))
    client = store["client"]
    run = client.search_runs([client.get_experiment_by_name("pipeline-test").experiment_id], "",
                             order_by=["attributes.start_time DESC"])[0]
    assert run.info.status == "KILLED"


def test_failed_registration_leaves_no_half_registered_version(store, monkeypatch):
    import mlflow

    from ecgtl import tracking

    client = store["client"]
    before = len(client.search_model_versions("name='ecgtl-finetuned'"))

    def refuse(self, *args, **kwargs):
        raise RuntimeError("alias store down")

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", refuse)
    with pytest.raises(RuntimeError, match="alias store down"):
        tracking.register(store["first"].model_uri, "ecgtl-finetuned")
    assert len(client.search_model_versions("name='ecgtl-finetuned'")) == before


def test_resume_a_killed_stage_reaches_the_uninterrupted_result(store, monkeypatch):
    import ecgtl.stages.common as common
    from ecgtl.errors import EcgtlError

    real_fit = common.fit

    def killed_after_first_epoch(*args, **kwargs):
        real_fit(*args, **kwargs, stop_after_epoch=0)  # the epoch-0 checkpoint is on disk
        raise KeyboardInterrupt

    config = tiny_finetune(fraction=0.8)
    uninterrupted = finetune(config)
    monkeypatch.setattr(common, "fit", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    client = store["client"]
    killed = client.search_runs([client.get_experiment_by_name("pipeline-test").experiment_id], "",
                                order_by=["attributes.start_time DESC"])[0]
    assert killed.info.status == "KILLED"
    monkeypatch.setattr(common, "fit", real_fit)
    with pytest.raises(EcgtlError, match="started with other parameters"):
        finetune(tiny_finetune(fraction=0.7), resume_run_id=killed.info.run_id)
    resumed = finetune(config, resume_run_id=killed.info.run_id)
    assert resumed.run_id == killed.info.run_id
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    assert resumed.metrics["test_macro_auc"] == pytest.approx(uninterrupted.metrics["test_macro_auc"], abs=1e-12)


def _transient_error(method_name, calls):
    """A client method that fails once with a server error (not "not found"), then works."""
    import mlflow
    from mlflow.exceptions import MlflowException

    real = getattr(mlflow.MlflowClient, method_name)

    def flaky(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException("connection reset by peer", error_code="TEMPORARILY_UNAVAILABLE")
        return real(self, *args, **kwargs)

    return flaky


def test_a_transient_registry_error_never_moves_champion(store, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    from ecgtl import tracking

    client = store["client"]
    client.delete_registered_model_alias("ecgtl-finetuned", "champion")  # as if no champion yet ...
    before = {v.version for v in client.search_model_versions("name='ecgtl-finetuned'")}
    calls = []
    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", _transient_error("get_model_version_by_alias", calls))
    # ... but the store cannot say so right now: the new version must not be made champion, nor kept half-made.
    with pytest.raises(MlflowException, match="connection reset"):
        tracking.register(store["first"].model_uri, "ecgtl-finetuned")
    assert calls and {v.version for v in client.search_model_versions("name='ecgtl-finetuned'")} == before
    client.set_registered_model_alias("ecgtl-finetuned", "champion", "1")


def test_a_transient_error_does_not_start_an_unrequested_pretraining(store, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    import ecgtl.stages.finetune as finetune_module

    started = []
    monkeypatch.setattr(finetune_module, "pretrain", lambda *a, **k: started.append(a))
    calls = []
    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", _transient_error("get_model_version_by_alias", calls))
    with pytest.raises(MlflowException, match="connection reset"):
        finetune(tiny_finetune(fraction=0.4))
    assert calls and not started


def test_resume_refuses_unknown_and_finished_runs(store):
    from ecgtl.errors import EcgtlError

    with pytest.raises(EcgtlError, match="--resume 0123456789abcdef0123456789abcdef: no such run"):
        finetune(tiny_finetune(), resume_run_id="0123456789abcdef0123456789abcdef")
    versions = len(store["client"].search_model_versions("name='ecgtl-finetuned'"))
    with pytest.raises(EcgtlError, match="already FINISHED"):
        finetune(tiny_finetune(), resume_run_id=store["first"].run_id)
    assert len(store["client"].search_model_versions("name='ecgtl-finetuned'")) == versions


def test_evaluate_applies_the_stored_calibration_and_refits_only_on_a_disjoint_part(store):
    from ecgtl.stages.configs import EvaluateConfig
    from ecgtl.stages.evaluate import evaluate

    client = store["client"]
    spec = "synthetic:g12ec?n=60&seed=2"
    stored = evaluate(EvaluateConfig(model_uri="models:/ecgtl-finetuned@champion", spec=spec, split="all", n_bootstrap=20))
    tags = client.get_run(stored.run_id).data.tags
    assert tags["ecgtl.calibration"] == "stored" and "test_ece_temperature" in stored.metrics
    assert "test_ece_platt" not in stored.metrics  # nothing was fitted on the scored records
    n_all = stored.metrics["test_n_records"]
    refit = evaluate(EvaluateConfig(model_uri="models:/ecgtl-finetuned@champion", spec=spec, split="all",
                                    calibration_fraction=0.5, n_bootstrap=20))
    assert client.get_run(refit.run_id).data.tags["ecgtl.calibration"] == "refit"
    assert refit.metrics["test_n_records"] == n_all - round(0.5 * n_all) and "test_ece_platt" in refit.metrics


def test_evaluate_counts_training_records_and_refuses_them_with_strict(store):
    from ecgtl.errors import EcgtlError
    from ecgtl.stages.configs import EvaluateConfig
    from ecgtl.stages.evaluate import evaluate

    base = EvaluateConfig(model_uri="models:/ecgtl-finetuned@champion", spec="synthetic:g12ec?n=60&seed=2", n_bootstrap=20)
    assert evaluate(base).metrics["test_n_records_seen_in_training"] == 0  # the model's own test split
    other_split = evaluate(EvaluateConfig(**{**base.__dict__, "split_seed": 1}))
    assert other_split.metrics["test_n_records_seen_in_training"] > 0  # another split puts training records in test
    with pytest.raises(EcgtlError, match="were training records of this model"):
        evaluate(EvaluateConfig(**{**base.__dict__, "split_seed": 1, "strict": True}))
