"""The MLproject file, written from the configs: each entry point's parameters name config fields, and a
parameter's type, default and the comment that documents it (the field's help and, for an enumerated option,
its declared choices) are read from that field's declaration, so they cannot drift from `ecgtl <stage> --help`.

    python -m ecgtl.mlproject > MLproject      # after changing a config or the table below

tests/test_mlproject.py checks that the committed file is what this writes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ecgtl.config import choices, field_help, field_types, flatten, format_number, value_type
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.stages.configs import (
    AblationConfig,
    EvaluateConfig,
    FinetuneConfig,
    MainConfig,
    PretrainConfig,
    PromoteConfig,
    TuneConfig,
)

HEADER = """name: ecgtl

# Written by `python -m ecgtl.mlproject` from the stage configs (ecgtl/stages/configs.py): edit those, not this.
# Each entry point runs a thin script in entrypoints/ that hands its parameters to the ecgtl stage
# (the same options as `ecgtl <stage> --help`, flattened with dots: --train.lr, --data.fraction, ...).
# Without conda: mlflow run . -e finetune --env-manager local   (or --env-manager virtualenv / uv)
conda_env: conda.yaml

entry_points:
"""
_TYPES = {str: "string", float: "float", int: "int", bool: "string"}


@dataclass(frozen=True)
class Parameter:
    """An MLproject parameter: the config fields it sets (the first one declares it) and, where the script
    does not take `--FIELD` (the `data prepare` command), its own flag ("" for the positional argument)."""

    fields: tuple[str, ...]
    flag: str | None = None


@dataclass(frozen=True)
class EntryPoint:
    script: str
    config: type
    parameters: dict[str, Parameter]


def _p(*fields: str, flag: str | None = None) -> Parameter:
    return Parameter(fields, flag)


_TRAINING = {"label_set": _p("data.label_set"), "fs": _p("data.fs"), "leads": _p("data.leads"),
             "domain": _p("data.domain"), "fraction": _p("data.fraction"), "scaling": _p("data.scaling"),
             "seed": _p("train.seed")}
ENTRY_POINTS: dict[str, EntryPoint] = {
    "main": EntryPoint("main", MainConfig, {
        "source": _p("pretrain.data.spec"), "target": _p("finetune.data.spec"), "model": _p("pretrain.model"),
        "objective": _p("pretrain.objective"),
        **{name: _p(f"pretrain.data.{name}", f"finetune.data.{name}")
           for name in ("label_set", "fs", "leads", "domain", "scaling")},
        "fraction": _p("finetune.data.fraction"), "schedule": _p("finetune.train.schedule"),
        "seed": _p("finetune.train.seed")}),
    "pretrain": EntryPoint("pretrain", PretrainConfig, {
        "source": _p("data.spec"), "objective": _p("objective"), "extra_specs": _p("extra_specs"),
        "fs_augment": _p("fs_augment"), "temperature": _p("temperature"), "model": _p("model"),
        "epochs": _p("train.epochs"), "lr": _p("train.lr"), "batch_size": _p("train.batch_size"),
        "precision": _p("train.precision"), **_TRAINING}),
    "finetune": EntryPoint("finetune", FinetuneConfig, {
        "target": _p("data.spec"), "pretrained": _p("pretrained"), "init": _p("init"),
        "schedule": _p("train.schedule"), "epochs": _p("train.epochs"),
        "epochs_per_stage": _p("train.epochs_per_stage"), "lr": _p("train.lr"), "decay": _p("train.decay"),
        "head": _p("head"), "label_shift": _p("label_shift"), "record_fs": _p("data.record_fs"),
        "model": _p("model"), "precision": _p("train.precision"), **_TRAINING}),
    "scratch": EntryPoint("scratch", FinetuneConfig, {
        "target": _p("data.spec"), "model": _p("model"), "epochs": _p("train.epochs"), "lr": _p("train.lr"),
        "precision": _p("train.precision"), **_TRAINING}),
    "evaluate": EntryPoint("evaluate", EvaluateConfig, {
        name: _p(name) for name in ("model_uri", "spec", "split", "challenge_weights", "label_shift")}),
    "prepare": EntryPoint("prepare", PrepareConfig, {
        "spec": _p("spec", flag=""), "fs": _p("fs", flag="--fs"), "length_s": _p("length_s", flag="--length"),
        "label_set": _p("label_set", flag="--label-set"), "split_seed": _p("split_seed", flag="--split-seed")}),
    "ablation": EntryPoint("ablation", AblationConfig, {
        name: _p(name) for name in ("preset", "quick", "axes", "seeds", "source", "target", "sources", "targets",
                                    "label_set", "scaling", "jobs", "storage", "study_name")}),
    "tune": EntryPoint("tune", TuneConfig, {
        "target": _p("finetune.data.spec"), "pretrained": _p("finetune.pretrained"),
        "epochs": _p("finetune.train.epochs"),
        **{name: _p(name) for name in ("n_trials", "timeout", "study_name", "storage", "workers", "pruner",
                                       "sampler_seed")}}),
    "promote": EntryPoint("promote", PromoteConfig, {
        name: _p(name) for name in ("model", "challenger", "margin", "ece_tolerance")}),
}
# The help of `data prepare`'s own options (PrepareConfig is not a stage config and has no HELP of its own).
_PREPARE_HELP = {"spec": "Dataset spec to prepare.", "fs": "Target sampling frequency (Hz).",
                 "length_s": "Seconds per record (crop/pad).", "label_set": "Label set.",
                 "split_seed": "Seed of the stratified split (CinC data)."}


def _default(value) -> str:
    if isinstance(value, bool):
        return f'"{str(value).lower()}"'
    if isinstance(value, float):
        return format_number(value) if value != int(value) or abs(value) >= 1e15 else str(int(value))
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return f'"{text}"' if text == "" or any(c in text for c in ':?&#,{}[]') else text


def _comment(kind, help_text: str) -> str:
    values = choices(kind)
    parts = [help_text.rstrip(".")] if help_text else []
    if values is not None:
        parts.append(f"one of {', '.join(values)}")
    return f"  # {'; '.join(parts)}" if parts else ""


# Not a config's entry point: a stage under torchrun (entrypoints/distributed.py; `python -m ecgtl` in each process).
DISTRIBUTED = """  distributed:
    parameters:
      nproc: {type: int, default: 2}  # processes on this machine (torchrun --nproc_per_node): GPUs, or CPU processes
      stage: {type: string, default: finetune}  # one of pretrain, finetune, scratch, main
      options: {type: string, default: ""}  # the stage's options, as for `ecgtl STAGE` ("--train.epochs 4")
    command: >-
      python entrypoints/distributed.py --nproc {nproc} --stage {stage} --options {options}
"""


def render() -> str:
    """The MLproject text."""
    lines = [HEADER.rstrip("\n")]
    for name, entry in ENTRY_POINTS.items():
        types, defaults = field_types(entry.config), flatten(entry.config())
        helps = _PREPARE_HELP if entry.config is PrepareConfig else field_help(entry.config)
        lines += [f"  {name}:", "    parameters:"]
        arguments = []
        for parameter_name, parameter in entry.parameters.items():
            first = parameter.fields[0]
            kind = types[first]
            lines.append(f"      {parameter_name}: {{type: {_TYPES[value_type(kind)]}, "
                         f"default: {_default(defaults[first])}}}{_comment(kind, helps.get(first, ''))}")
            for field in parameter.fields:
                flag = f"--{field}" if parameter.flag is None else parameter.flag
                arguments.append(f"{flag} {{{parameter_name}}}".strip())
        lines.append("    command: >-")
        command, line = [], f"python entrypoints/{entry.script}.py"
        for argument in arguments:  # folded at about 110 columns, as the file was written by hand
            if len(line) + 1 + len(argument) > 104:
                command.append(line)
                line = argument
            else:
                line = f"{line} {argument}"
        command.append(line)
        lines += [f"      {part}" for part in command]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n\n" + DISTRIBUTED


if __name__ == "__main__":
    sys.stdout.write(render())
