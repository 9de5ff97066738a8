"""Self-supervised pretraining through the stages: a contrastive encoder learnt on a labelled spec plus an
unlabelled CinC folder (no #Dx), registered with its objective; fine-tuned with every schedule; the frozen
baselines; an unlabelled source alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import digital_ecg, use_mlflow_store, write_cinc

from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig
from ecgtl.stages.finetune import finetune
from ecgtl.stages.pretrain import pretrain
from ecgtl.training.config import SCHEDULES, TrainConfig

TARGET = "synthetic:g12ec?n=80&seed=5"


def _unlabelled_folder(root):
    for i in range(30):
        write_cinc(root / "u", f"U{i + 1:05d}", digital_ecg(seed=100 + i), dx=None)
    return root


def _contrastive(spec="synthetic:ptbxl?n=80&seed=5", **changes) -> PretrainConfig:
    return PretrainConfig(data=DataConfig(spec=spec), model="xresnet1d18", objective="contrastive",
                          train=TrainConfig(epochs=2, batch_size=16, lr=3e-3), n_bootstrap=20,
                          **{"probe_epochs": 1, **changes})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    folder = tmp_path_factory.mktemp("ssl")
    with pytest.MonkeyPatch.context() as patch:
        use_mlflow_store(patch, folder, "ssl-test", cache=True)
        unlabelled = _unlabelled_folder(folder / "unlabelled")
        result = pretrain(_contrastive(extra_specs=f"cinc:{unlabelled}"))
        yield {"client": mlflow.MlflowClient(), "pretrained": result, "unlabelled": unlabelled, "folder": folder}


def test_a_contrastive_pretraining_uses_unlabelled_records_and_is_registered_with_its_objective(store):
    client, result = store["client"], store["pretrained"]
    run = client.get_run(result.run_id)
    assert run.data.tags["ecgtl.objective"] == "contrastive" and run.data.params["objective"] == "contrastive"
    assert [m.step for m in client.get_metric_history(result.run_id, "ssl_loss")] == [0, 1]
    n_labelled = run.data.metrics["n_train_records"]
    assert run.data.metrics["n_ssl_records"] > n_labelled  # the unlabelled folder's training split too
    assert "val_probe_macro_auc" in run.data.metrics and "test_macro_auc" in run.data.metrics
    version = client.get_model_version_by_alias("ecgtl-pretrained", "champion")
    assert version.tags["ecgtl.objective"] == "contrastive"


def test_the_extra_specs_records_are_dataset_inputs_and_in_the_bundles_training_records(store, tmp_path):
    """The leak guard must see every record the encoder learnt from, also the unlabelled extra folder's."""
    from ecgtl import tracking
    from ecgtl.data.sources import dataset_identity
    from ecgtl.inference import load_bundle

    run = store["client"].get_run(store["pretrained"].run_id)
    sources = [json.loads(d.dataset.source) for d in run.inputs.dataset_inputs if d.tags[0].value == "training"]
    extra = f"cinc:{store['unlabelled']}"
    assert extra in {source["spec"] for source in sources}
    _, info = load_bundle(tracking.download_model(store["pretrained"].model_uri, tmp_path))
    trained = {record["resolved"]: record for record in info.training}
    assert dataset_identity(extra) in trained and len(trained[dataset_identity(extra)]["record_ids"]) > 0


@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s != "frozen"])
def test_finetune_works_from_a_contrastive_encoder_with_every_schedule(store, schedule):
    result = finetune(FinetuneConfig(data=DataConfig(spec=TARGET), pretrained=store["pretrained"].model_uri,
                                     train=TrainConfig(epochs=2, batch_size=16, schedule=schedule), n_bootstrap=20),
                      register=False)
    assert 0 <= result.metrics["test_macro_auc"] <= 1


@pytest.mark.parametrize("init", ["linear_probe", "random_frozen"])
def test_the_frozen_baselines_train_only_a_new_head(store, init, tmp_path):
    from ecgtl import tracking
    from ecgtl.inference import load_bundle
    from ecgtl.models import create_model

    config = FinetuneConfig(data=DataConfig(spec=TARGET), init=init, pretrained=store["pretrained"].model_uri,
                            model="" if init == "linear_probe" else "xresnet1d18",
                            train=TrainConfig(epochs=2, batch_size=16, seed=3), n_bootstrap=20)
    result = finetune(config, register=False)
    tuned, _ = load_bundle(tracking.download_model(result.model_uri, tmp_path / "tuned"))
    if init == "linear_probe":
        start, _ = load_bundle(tracking.download_model(store["pretrained"].model_uri, tmp_path / "start"))
    else:
        torch.manual_seed(3)
        start = create_model("xresnet1d18", 18)
    for key, value in start.body.state_dict().items():
        assert torch.equal(value, tuned.body.state_dict()[key]), key  # bit for bit, BatchNorm statistics too
    run = store["client"].get_run(result.run_id)
    assert run.data.tags["ecgtl.init"] == init
    assert run.data.tags["ecgtl.stage"] == ("finetune" if init == "linear_probe" else "scratch")
    trainable = [m.value for m in store["client"].get_metric_history(result.run_id, "trainable_params")]
    assert trainable == [trainable[0]] * 2 and trainable[0] < sum(p.numel() for p in tuned.parameters()) / 10


def test_an_unlabelled_source_alone_gives_an_encoder_without_a_report(store):
    result = pretrain(_contrastive(spec=f"cinc:{store['unlabelled']}", probe_every=1), register=False)
    run = store["client"].get_run(result.run_id)
    assert "ssl_loss" in run.data.metrics and "test_macro_auc" not in run.data.metrics
    from ecgtl import tracking

    card = Path(tracking.download_artifact(result.run_id, "model_card.md")).read_text()
    assert "| LVH | 0 | 0.000 | – (too few test records) | – |" in card  # no thresholds without a report
    tuned = finetune(FinetuneConfig(data=DataConfig(spec=TARGET), pretrained=result.model_uri,
                                    train=TrainConfig(epochs=1, batch_size=16), n_bootstrap=20), register=False)
    assert "test_macro_auc" in tuned.metrics


def test_probe_epochs_0_never_reads_a_label_and_reports_nothing(store):
    result = pretrain(_contrastive(probe_epochs=0, probe_every=0), register=False)
    metrics = store["client"].get_run(result.run_id).data.metrics
    assert "ssl_loss" in metrics and "test_macro_auc" not in metrics and "train_loss" not in metrics


def test_objectives_refuse_what_they_cannot_honour_before_reading_any_data(tmp_path, monkeypatch):
    from ecgtl.errors import EcgtlError

    use_mlflow_store(monkeypatch, tmp_path, "refusals")
    with pytest.raises(EcgtlError, match="extra_specs adds unlabelled data; objective=supervised trains on labels"):
        pretrain(PretrainConfig(extra_specs="cinc:/x"))
    with pytest.raises(EcgtlError, match="objective=contrastive augments time signals; data.domain=fft_abs"):
        pretrain(replace(_contrastive(), data=DataConfig(domain="fft_abs")))
    with pytest.raises(EcgtlError, match="fs_augment low-passes the crops of supervised pretraining"):
        pretrain(_contrastive(fs_augment="50,500"))
    with pytest.raises(EcgtlError, match="objective must be one of supervised, contrastive, cpc; got 'jepa'"):
        PretrainConfig(objective="jepa").validate()
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was touched
