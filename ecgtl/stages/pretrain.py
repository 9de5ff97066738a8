"""Pretrain a model on the source dataset (default: synthetic PTB-XL, shared18 labels, 100 Hz).

`objective=supervised` trains the whole model on the source's labels. `objective=contrastive` composes one
more step before the usual ones: the encoder learns from `data.spec` and `extra_specs` without labels
(`training/objectives.py`, logged per epoch as `ssl_loss`, `ssl_val_loss`, `val_probe_macro_auc`), then the
head alone is fitted on `data.spec`'s labels for `probe_epochs` (a linear-probe-style head, so the registered
model has a test report and calibration; skipped without labels). Both register `ecgtl-pretrained` with the tag
`ecgtl.objective`. `fs_augment` (supervised) low-passes each training crop as if it had been recorded at a
random rate (`training/augment.rate_augment`), for models that must read records arriving at lower rates.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ecgtl import runs, timing, tracking
from ecgtl.config import flatten
from ecgtl.data.cache import PreparedData, concatenate_splits
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inputs import parse_leads
from ecgtl.models import create_model
from ecgtl.models.base import EcgModel
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.common import (
    StageResult,
    checkpoint_path,
    fit_pipeline,
    load_data,
    run_name,
    stage_tags,
    train_model,
)
from ecgtl.stages.configs import REGISTERED_PRETRAINED, PretrainConfig
from ecgtl.training.augment import rate_augment
from ecgtl.training.objectives import fit_contrastive


def _unlabelled_union(config: PretrainConfig, prepared: PreparedData, rows: np.ndarray):
    """The training split the encoder learns from: `data.spec`'s (its fraction) and every extra spec's, read at
    the same fs, length and label set (labels are not used)."""
    primary = prepared.split("train")
    parts = [primary]
    extra_rows = []
    for spec in filter(None, (s.strip() for s in config.extra_specs.split(","))):
        extra, _ = load_data(replace(config.data, spec=spec, fraction=1.0), config.train.seed)
        split = extra.split("train")
        parts.append(split)
        extra_rows.append(len(split))
    union = concatenate_splits(parts)
    offset = len(primary)
    union_rows = [np.sort(rows)]
    for n in extra_rows:
        union_rows.append(np.arange(offset, offset + n))
        offset += n
    return union, np.concatenate(union_rows)


def contrastive_step(model: EcgModel, config: PretrainConfig, prepared: PreparedData, rows: np.ndarray,
                     run_id: str, *, resume: bool) -> InputPipeline:
    """Train `model`'s encoder with the contrastive objective, logging every epoch to the active run; returns
    the input pipeline it fitted (on `data.spec`'s training rows), which the later steps reuse."""
    if config.data.domain != "time":
        raise EcgtlError(f"objective=contrastive augments time signals; data.domain={config.data.domain} is not "
                         "supported (use time)")
    train, train_rows = _unlabelled_union(config, prepared, rows)
    pipeline = fit_pipeline(config.data, config.train, prepared, rows)

    def log(result) -> None:
        tracking.log_epoch(result.epoch, {"ssl_loss": result.train_loss, "ssl_val_loss": result.val_loss,
                                          "val_probe_macro_auc": result.val_macro_auc,
                                          "ssl_epoch_seconds": result.seconds})

    tracking.log_epoch(0, {"n_ssl_records": len(train_rows)})
    fit_contrastive(model, train, prepared.split("val"), config.train, pipeline, temperature=config.temperature,
                    probe_every=config.probe_every, probe_split=prepared.split("train"), probe_rows=rows,
                    train_rows=train_rows, checkpoint_path=checkpoint_path(run_id).with_name("contrastive.pt"),
                    resume=resume, on_epoch=log)
    return pipeline


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
    tags = {**stage_tags(runs.PRETRAIN, "scratch", source, source, config.data, config.train, config, axes),
            runs.OBJECTIVE: config.objective}
    train, fit_model, pipeline = config.train, True, None
    with tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id,
                            system_metrics=config.train.system_metrics, parent_run_id=parent_run_id) as run_id:
        if config.objective == "contrastive":
            with timing.phase(runs.PRETRAIN):
                pipeline = contrastive_step(model, config, prepared, rows, run_id, resume=resume_run_id is not None)
            labelled = bool(prepared.split("train").labels[rows].any())
            fit_model = labelled and config.probe_epochs > 0
            train = replace(config.train, schedule="frozen", frozen_bn="eval", epochs=max(config.probe_epochs, 1))
        return train_model(model, prepared, rows, config.data, train, run_id,
                           registered_name=REGISTERED_PRETRAINED if register else None,
                           n_bootstrap=config.n_bootstrap, resume=resume_run_id is not None,
                           extra={"spec": config.data.spec, "objective": config.objective}, stage=runs.PRETRAIN,
                           fit_model=fit_model, evaluate=fit_model, version_tags={runs.OBJECTIVE: config.objective},
                           pipeline=pipeline, augment=rate_augmentation(config))


def rate_augmentation(config: PretrainConfig):
    """`fs_augment="LOW,HIGH"`: each training crop as if recorded at a random rate in [LOW, HIGH] Hz."""
    if not config.fs_augment:
        return None
    rates, fs = config.fs_augment_range, config.data.fs
    return lambda x, generator: rate_augment(x, fs, rates, generator)
