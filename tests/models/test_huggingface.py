"""Hugging Face encoders (`hf:`), without a network: a tiny HuBERT made with `transformers` and saved to a folder
loads as a local snapshot and from the hub's offline cache layout, fine-tunes with every schedule and serves;
its licence reaches the model card; an offline miss, a wrong rate or window, a foreign family and an ONNX export
are one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import use_mlflow_store

from ecgtl.errors import EcgtlError

transformers = pytest.importorskip("transformers")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CARD = "---\nlicense: cc-by-nc-4.0\ntags:\n- ecg\n---\n# tiny HuBERT for tests\n"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 5),
                                       conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2)
    folder = tmp_path_factory.mktemp("hf") / "tiny-hubert"
    transformers.HubertModel(config).save_pretrained(folder)
    (folder / "README.md").write_text(CARD)
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        use_mlflow_store(patch, tmp_path_factory.mktemp("hf-store"), "hf-test", cache=True)
        yield


def _config(pretrained: str, schedule: str = "gradual", epochs: int = 4, **data):
    from ecgtl.stages.configs import DataConfig, FinetuneConfig
    from ecgtl.training.config import TrainConfig

    return FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=80&seed=5", **data), pretrained=pretrained,
                          n_bootstrap=20, train=TrainConfig(epochs=epochs, batch_size=16, crop_s=5, schedule=schedule,
                                                            explain_examples=0))


def test_a_local_snapshot_fine_tunes_serves_and_carries_its_licence(store, snapshot, tmp_path):
    import mlflow

    from ecgtl import runs, tracking
    from ecgtl.stages.finetune import finetune

    result = finetune(_config(f"hf:{snapshot}"))
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags[runs.PRETRAINED_LICENCE] == "cc-by-nc-4.0" and run.data.tags[runs.SOURCE] == "hf:tiny-hubert"
    trainable = [m.value for m in client.get_metric_history(result.run_id, "trainable_params")]
    assert trainable == sorted(trainable) and len(set(trainable)) == 4  # head, + layer2, + layer1, + features
    card = Path(tracking.download_artifact(result.run_id, "model_card.md")).read_text()
    assert "**Licence of the starting weights: cc-by-nc-4.0**" in card
    signals = np.random.default_rng(0).normal(0, 0.3, (3, 12, 1000)).astype(np.float32)
    served = mlflow.pyfunc.load_model(result.model_uri).predict(signals).to_numpy()
    assert served.shape[0] == 3 and np.isfinite(served).all()
    from ecgtl.export import export

    with pytest.raises(EcgtlError, match="hf-hubert: ONNX export is not offered for Hugging Face encoders"):
        export(result.model_uri, tmp_path / "onnx")


@pytest.mark.parametrize("schedule", ["full", "two_stage", "chain_thaw", "frozen"])
def test_every_schedule_fine_tunes_a_hugging_face_encoder(store, snapshot, schedule):
    from ecgtl.stages.finetune import finetune

    result = finetune(_config(f"hf:{snapshot}", schedule, epochs=2), register=False)
    assert 0 <= result.metrics["test_macro_auc"] <= 1


def test_the_offline_cache_layout_resolves_and_an_offline_miss_is_one_line(store, snapshot, tmp_path, monkeypatch):
    from ecgtl.models.huggingface import load_hf

    repo = tmp_path / "cache" / "models--ecg-org--tiny-hubert"
    shutil.copytree(snapshot, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_hf("hf:ecg-org/tiny-hubert")
    assert encoder.digest == COMMIT and encoder.licence == "cc-by-nc-4.0" and encoder.architecture == "hf-hubert"
    with pytest.raises(EcgtlError, match=r"hf:ecg-org/absent: not in .*cache and HF_HUB_OFFLINE is set: download it "
                                         r"once with a network, or pass a local snapshot folder"):
        load_hf("hf:ecg-org/absent")


def test_a_wrong_rate_window_or_family_is_one_line_before_any_run(store, snapshot, tmp_path):
    import mlflow

    from ecgtl.stages.finetune import finetune

    with pytest.raises(EcgtlError, match=r"reads records at 100 Hz; data asks for 500 Hz: pass --data.fs 100"):
        finetune(_config(f"hf:{snapshot}", fs=500))
    with pytest.raises(EcgtlError, match=r"reads windows of 5 s; training asks for 2.5 s: pass --train.crop_s 5"):
        from dataclasses import replace

        config = _config(f"hf:{snapshot}")
        finetune(replace(config, train=replace(config.train, crop_s=2.5)))
    foreign = tmp_path / "bert"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EcgtlError, match="model_type 'bert'; known families: hubert"):
        finetune(_config(f"hf:{foreign}"))
    assert not any(r.info.run_name for r in mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("hf-test").experiment_id], "attributes.status = 'FAILED'"))
