"""Pretrain a model on the source dataset (default: synthetic PTB-XL, shared18 labels, 100 Hz)."""

from __future__ import annotations

import torch

from ecgtl import runs, tracking
from ecgtl.config import flatten
from ecgtl.data.spec import parse_spec
from ecgtl.inputs import parse_leads
from ecgtl.models import create_model
from ecgtl.stages.common import (
    StageResult,
    load_data,
    run_name,
    stage_tags,
    train_model,
)
from ecgtl.stages.configs import REGISTERED_PRETRAINED, PretrainConfig


def pretrain(config: PretrainConfig, *, nested: bool = False, resume_run_id: str | None = None,
             register: bool = True, axes: dict | None = None, parent_run_id: str | None = None) -> StageResult:
    """Train on the source and log the model; register `ecgtl-pretrained` unless `register=False`."""
    config.validate()
    tracking.configure()
    prepared, rows = load_data(config.data, config.train.seed)
    torch.manual_seed(config.train.seed)
    model = create_model(config.model, len(prepared.classes), n_leads=len(parse_leads(config.data.leads)))
    name = run_name(runs.PRETRAIN, config.model, config.data, config.train.seed, axes)
    source = parse_spec(config.data.spec).short_name
    tags = stage_tags(runs.PRETRAIN, "scratch", source, source, config.data, config.train, config, axes)
    with tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id,
                            system_metrics=config.train.system_metrics, parent_run_id=parent_run_id) as run_id:
        return train_model(model, prepared, rows, config.data, config.train, run_id,
                           registered_name=REGISTERED_PRETRAINED if register else None,
                           n_bootstrap=config.n_bootstrap, resume=resume_run_id is not None,
                           extra={"spec": config.data.spec}, stage=runs.PRETRAIN)
