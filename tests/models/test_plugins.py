"""A plugin architecture: a package declaring an `ecgtl.models` entry point, installed by pip into a folder on the
test's path, is listed by `ecgtl models list`, pretrains and fine-tunes like a built-in; a plugin that shadows a
built-in or builds something else is one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import use_mlflow_store

from ecgtl.errors import EcgtlError

PLUGIN = '''
"""ecgtl_tiny: a two-group 1-D CNN as an ecgtl plugin architecture."""
from torch import nn

from ecgtl.models.base import EcgModel


def block(n_in: int, n_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(n_in, n_out, 7, stride=stride, padding=3, bias=False),
                         nn.BatchNorm1d(n_out), nn.ReLU())


def build(n_leads: int, n_classes: int) -> EcgModel:
    groups = [("stem", block(n_leads, 32, 2)), ("block1", block(32, 64, 2))]
    return EcgModel(groups, n_features=64, n_classes=n_classes)  # features, layer groups, the ecgtl head


def shadow(n_leads: int, n_classes: int) -> EcgModel:
    return build(n_leads, n_classes)


def not_a_model(n_leads: int, n_classes: int):
    return nn.Linear(n_leads, n_classes)
'''


def _install(tmp_path, entry_points: str):
    source, site = tmp_path / "src", tmp_path / "site"
    (source / "ecgtl_tiny").mkdir(parents=True)
    (source / "ecgtl_tiny" / "__init__.py").write_text(PLUGIN)
    (source / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "ecgtl-tiny"
        version = "0.1"
        [project.entry-points."ecgtl.models"]
        {entry_points}
        """))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def test_a_plugin_architecture_is_listed_pretrained_and_fine_tuned(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ecgtl.cli import cli
    from ecgtl.models import architectures
    from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig
    from ecgtl.stages.finetune import finetune
    from ecgtl.stages.pretrain import pretrain
    from ecgtl.training.config import TrainConfig

    assert "tiny_cnn" not in architectures()
    monkeypatch.syspath_prepend(str(_install(tmp_path, 'tiny_cnn = "ecgtl_tiny:build"')))
    assert architectures()[-1] == "tiny_cnn"
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert listed.exit_code == 0 and "tiny_cnn" in listed.output and "groups: stem (" in listed.output
    use_mlflow_store(monkeypatch, tmp_path, "plugin", cache=True)
    source = pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=80&seed=5"), model="tiny_cnn",
                                     train=TrainConfig(epochs=1, batch_size=16), n_bootstrap=20), register=False)
    tuned = finetune(FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=80&seed=5"), pretrained=source.model_uri,
                                    train=TrainConfig(epochs=3, batch_size=16, schedule="gradual"), n_bootstrap=20),
                     register=False)
    assert 0 <= tuned.metrics["test_macro_auc"] <= 1
    import mlflow

    trainable = [m.value for m in mlflow.MlflowClient().get_metric_history(tuned.run_id, "trainable_params")]
    assert trainable == sorted(trainable) and len(set(trainable)) == 3  # head, + block1, + stem: gradual unfreezing


def test_a_plugin_that_shadows_a_built_in_or_builds_something_else_is_one_line(tmp_path, monkeypatch):
    from ecgtl.models import architectures, create_model

    site = _install(tmp_path, 'xresnet1d50 = "ecgtl_tiny:shadow"\nnot_a_model = "ecgtl_tiny:not_a_model"')
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(EcgtlError, match="the name 'xresnet1d50' is a built-in architecture"):
        architectures()
    monkeypatch.syspath_prepend(str(_install(tmp_path / "second", 'not_a_model = "ecgtl_tiny:not_a_model"')))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    with pytest.raises(EcgtlError, match="model 'not_a_model': its builder returned a Linear, not an ecgtl.models"):
        create_model("not_a_model", 5)
