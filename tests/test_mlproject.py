"""MLproject's entry points are thin: each parameter reaches a config field, and the defaults it declares are the
config's own (so `mlflow run . -e finetune` and `ecgtl finetune` train, and reuse, the same thing)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from ecgtl.cli import _config_from, cli
from ecgtl.stages import configs
from ecgtl.stages.finetune import scratch_config

PROJECT = Path(__file__).resolve().parents[1] / "MLproject"
ENTRY_POINTS = yaml.safe_load(PROJECT.read_text())["entry_points"]
STAGES = {"main": configs.MainConfig, "pretrain": configs.PretrainConfig, "finetune": configs.FinetuneConfig,
          "scratch": configs.FinetuneConfig, "evaluate": configs.EvaluateConfig, "ablation": configs.AblationConfig,
          "tune": configs.TuneConfig, "promote": configs.PromoteConfig}


def _default_arguments(entry: dict) -> list[str]:
    """The entry's command with its declared defaults substituted, as MLflow does (shell-quoted)."""
    command = " ".join(entry["command"].split())
    values = {name: str(spec.get("default", "")) for name, spec in entry["parameters"].items()}
    substituted = re.sub(r"\{(\w+)\}", lambda m: shlex.quote(values[m.group(1)]), command)
    return shlex.split(substituted)[2:]  # drop `python entrypoints/x.py`


def test_every_stage_has_an_entry_point():
    assert set(STAGES) | {"prepare"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_entry_point_defaults_are_the_configs_defaults(name):
    command = cli.commands[name]
    options = command.make_context(name, _default_arguments(ENTRY_POINTS[name])).params
    options.pop("resume", None), options.pop("axis_values", None)
    built = _config_from(STAGES[name], options)
    expected = STAGES[name]()
    if name == "scratch":
        built, expected = scratch_config(built), scratch_config(expected)
    assert built == expected


@pytest.mark.parametrize("name", ["finetune", "scratch", "main"])
def test_training_entry_points_expose_the_input_contract_and_model(name):
    parameters = set(ENTRY_POINTS[name]["parameters"])
    assert {"fs", "leads", "domain", "label_set", "model", "scaling"} <= parameters


def test_dependencies_are_declared_once():
    """conda.yaml's pip list and a served model's requirements are pyproject's dependencies (conda.yaml adds
    kaleido for PNG figures); PyYAML, which ecgtl imports, is among them."""
    import tomllib

    from ecgtl.packaging import runtime_requirements

    declared = tomllib.loads((PROJECT.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((PROJECT.parent / "conda.yaml").read_text())
    pip_list = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert runtime_requirements() == declared
    assert sorted(pip_list) == sorted([*declared, "kaleido>=0.2"])
    assert any(r.startswith("pyyaml") for r in declared)


def test_mlproject_is_written_from_the_config_declarations():
    """Every parameter's type, default and documented choices come from its config field: the committed file is
    what `python -m ecgtl.mlproject` writes (regenerate it after changing a config)."""
    from ecgtl.mlproject import render

    assert PROJECT.read_text() == render(), "MLproject is stale: python -m ecgtl.mlproject > MLproject"
    finetune = PROJECT.read_text().split("  finetune:")[1].split("  scratch:")[0]
    schedule = next(line for line in finetune.splitlines() if line.strip().startswith("schedule:"))
    assert schedule.endswith("one of full, two_stage, gradual, chain_thaw, frozen")
