"""CPC through the stages, in a store of its own: an S4D encoder pretrained with contrastive predictive coding is
logged and registered with its objective (like `contrastive`), and fine-tuned with gradual unfreezing."""

from __future__ import annotations

from conftest import use_mlflow_store

from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig
from ecgtl.stages.finetune import finetune
from ecgtl.stages.pretrain import pretrain
from ecgtl.training.config import TrainConfig


def test_a_cpc_pretraining_of_an_s4d_encoder_is_logged_registered_and_fine_tuned(tmp_path, monkeypatch):
    import mlflow

    use_mlflow_store(monkeypatch, tmp_path, "cpc-test", cache=True)
    result = pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=80&seed=5"), model="s4d_small",
                                     objective="cpc", cpc_segment_s=0.5, cpc_steps=2, probe_epochs=1, n_bootstrap=20,
                                     train=TrainConfig(epochs=2, batch_size=16, lr=3e-3)))
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags["ecgtl.objective"] == "cpc" and run.data.params["cpc_steps"] == "2"
    assert [m.step for m in client.get_metric_history(result.run_id, "ssl_loss")] == [0, 1]
    assert "val_probe_macro_auc" in run.data.metrics and "test_macro_auc" in run.data.metrics
    assert client.get_model_version_by_alias("ecgtl-pretrained", "champion").tags["ecgtl.objective"] == "cpc"
    tuned = finetune(FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=80&seed=5"), pretrained=result.model_uri,
                                    train=TrainConfig(epochs=2, batch_size=16, schedule="gradual"), n_bootstrap=20),
                     register=False)
    assert 0 <= tuned.metrics["test_macro_auc"] <= 1
