"""Fine-tune a pretrained model on the target dataset, or train the same model from scratch (the baseline).

Both go through one code path; `init` decides where the weights start. A pretrained model is taken from a
model URI (default `models:/ecgtl-pretrained@champion`). If that default does not exist yet, a pretraining
runs first as a nested run: `fallback_pretrain` (a function argument, not part of the config, so it is neither
an MLflow param nor in the reuse key), by default `PretrainConfig()` at the target's fs, leads and domain.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ecgtl import runs, tracking
from ecgtl.config import flatten
from ecgtl.data.lineage import TrainingRecords
from ecgtl.data.sources import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inference import load_bundle
from ecgtl.models import create_model
from ecgtl.pipeline import leads_label, parse_leads
from ecgtl.stages.common import (
    DEFAULT_TARGET,
    DataConfig,
    StageResult,
    load_data,
    run_name,
    stage_tags,
    train_model,
)
from ecgtl.stages.pretrain import REGISTERED_PRETRAINED, PretrainConfig, pretrain
from ecgtl.training.loop import TrainConfig

DEFAULT_PRETRAINED = f"models:/{REGISTERED_PRETRAINED}@champion"
REGISTERED = {"pretrained": "ecgtl-finetuned", "scratch": "ecgtl-scratch"}
DEFAULT_SCRATCH_MODEL = "xresnet1d50"


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_TARGET))
    init: str = "pretrained"
    pretrained: str = DEFAULT_PRETRAINED
    # Architecture. init=pretrained: the pretrained model's (empty = take it; another name is an error);
    # init=scratch: empty means xresnet1d50.
    model: str = ""
    head: str = "new"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, lr=1e-2, schedule="gradual", epochs_per_stage=1, decay=2.6))
    n_bootstrap: int = 1000

    def validate(self) -> FinetuneConfig:
        if self.init not in REGISTERED:
            raise EcgtlError(f"init must be 'pretrained' or 'scratch', got {self.init!r}")
        if self.head not in ("new", "reuse"):
            raise EcgtlError(f"head must be 'new' or 'reuse', got {self.head!r}")
        self.data.validate()
        self.train.validate()
        return self


def scratch_config(config: FinetuneConfig) -> FinetuneConfig:
    """The fair baseline: same data, model, epochs and lr, random initialisation, everything trainable."""
    return replace(config, init="scratch", train=replace(config.train, schedule="full", decay=1.0))


def default_fallback_pretrain(config: FinetuneConfig) -> PretrainConfig:
    """What runs when the default pretrained model does not exist yet: the default pretraining at the
    target's sampling rate, leads and input domain (and architecture, when one is named)."""
    base = PretrainConfig()
    data = replace(base.data, fs=config.data.fs, leads=config.data.leads, domain=config.data.domain)
    return replace(base, data=data, model=config.model or base.model)


def _check_pipeline_matches(info, data: DataConfig, uri: str) -> None:
    pipeline = info.input_pipeline()
    wanted = (data.fs, parse_leads(data.leads), data.domain)
    if (pipeline.fs, pipeline.leads, pipeline.domain) != wanted:
        raise EcgtlError(f"{uri} was trained on {pipeline.describe()}; data asks for {leads_label(wanted[1])} "
                         f"leads, {data.domain}, {data.fs:g} Hz: pretrain with the same fs, leads and domain")


def finetune(config: FinetuneConfig, *, nested: bool = False, resume_run_id: str | None = None,
             register: bool = True, axes: dict | None = None, parent_run_id: str | None = None,
             fallback_pretrain: PretrainConfig | None = None) -> StageResult:
    """Fine-tune (or train from scratch) and log the model; register unless `register=False`."""
    config.validate()
    tracking.configure()
    stage = "finetune" if config.init == "pretrained" else "scratch"
    prepared, rows = load_data(config.data, config.train.seed)
    target = parse_spec(config.data.spec).short_name
    architecture = config.model or DEFAULT_SCRATCH_MODEL
    pretrained_uri = config.pretrained if config.init == "pretrained" else ""
    new_head, inherited = True, []
    tags = stage_tags(stage, config.init, "none", target, config.data, config.train, config, axes)
    name = run_name(stage, architecture, config.data, config.train.seed, axes)
    with tempfile.TemporaryDirectory() as tmp, \
            tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id,
                           parent_run_id=parent_run_id) as run_id:
        if config.init == "pretrained":
            if not tracking.model_exists(pretrained_uri):
                if pretrained_uri != DEFAULT_PRETRAINED:
                    raise EcgtlError(f"{pretrained_uri}: no such model in {tracking.tracking_uri()}")
                fallback = fallback_pretrain or default_fallback_pretrain(config)
                print(f"{pretrained_uri} does not exist yet: pretraining on {fallback.data.spec} first "
                      "(nested run)", file=sys.stderr)
                pretrained_uri = pretrain(fallback, nested=True).model_uri
            model, info = load_bundle(tracking.download_model(pretrained_uri, Path(tmp)))
            if config.model and config.model != info.architecture:
                raise EcgtlError(f"model={config.model} but {pretrained_uri} is a {info.architecture}; "
                                 "leave model empty to fine-tune the pretrained architecture")
            _check_pipeline_matches(info, config.data, pretrained_uri)
            torch.manual_seed(config.train.seed)  # a new head starts the same way in every run
            new_head = config.head == "new" or list(info.classes) != list(prepared.classes)
            if new_head:
                model.replace_head(len(prepared.classes))
            architecture = info.architecture
            inherited = [TrainingRecords.from_dict(t) for t in info.training]
            source = parse_spec(info.extra["spec"]).short_name if info.extra.get("spec") else "unknown"
            tracking.set_tags({runs.SOURCE: source, runs.PRETRAINED_URI: pretrained_uri,
                               runs.MLFLOW_RUN_NAME: run_name(stage, architecture, config.data, config.train.seed, axes)})
        else:
            torch.manual_seed(config.train.seed)
            model = create_model(architecture, len(prepared.classes), n_leads=len(parse_leads(config.data.leads)))
        return train_model(model, prepared, rows, config.data, config.train, run_id,
                           registered_name=REGISTERED[config.init] if register else None,
                           n_bootstrap=config.n_bootstrap, resume=resume_run_id is not None,
                           extra={"spec": config.data.spec, "pretrained": pretrained_uri}, new_head=new_head,
                           inherited=inherited)
