"""Pretrain a model on the source dataset (default: synthetic PTB-XL, shared18 labels, 100 Hz).

`objective` names a registered objective (`training/objectives/`). One that uses labels (`supervised`) trains
the whole model on the source's labels. A self-supervised one (`contrastive`, `cpc`) has the encoder learn from
`data.spec` and `extra_specs` without labels (logged per epoch under its own names: `ssl_loss`,
`ssl_val_loss`, `val_probe_macro_auc`), then the head alone is fitted on `data.spec`'s labels for
`probe_epochs` (a linear-probe-style head, so the registered model has a test report and calibration; none
without labels). All register `ecgtl-pretrained` with the tag `ecgtl.objective`. `fs_augment` (supervised)
low-passes each training crop as if it had been recorded at a random rate (`training/augment.rate_augment`),
for models that must read records arriving at lower rates.
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
from ecgtl.stages.common import (
    FitData,
    Registration,
    StageResult,
    TrainingRun,
    check_training,
    evaluate_step,
    explain_step,
    fit_pipeline,
    fit_step,
    load_data,
    log_inputs,
    publish_step,
    run_name,
    stage_tags,
    training_priors,
)
from ecgtl.stages.configs import REGISTERED_PRETRAINED, PretrainConfig
from ecgtl.training.config import TrainConfig
from ecgtl.training.objectives import objective_class
from ecgtl.training.objectives.supervised import Supervised


def load_extra_data(config: PretrainConfig) -> list[PreparedData]:
    """Every extra spec prepared at `data.spec`'s fs, length and label set; one with no readable training record
    is refused (one line), not used without a word."""
    extras = []
    for spec in filter(None, (s.strip() for s in config.extra_specs.split(","))):
        extra, _ = load_data(replace(config.data, spec=spec, fraction=1.0), config.train.seed)
        if not len(extra.split("train")):
            raise EcgtlError(f"extra_specs {spec}: no readable record in its training split "
                             f"({len(extra.manifest['problems'])} skipped)")
        extras.append(extra)
    return extras


def unlabelled_union(prepared: PreparedData, rows: np.ndarray, extras: list[PreparedData]) -> FitData:
    """What a self-supervised objective learns from: `data.spec`'s training rows (its fraction) and the training
    split of every extra spec (labels are not used)."""
    parts, union_rows, offset = [prepared.split("train")], [np.sort(rows)], len(prepared.split("train"))
    for extra in extras:
        split = extra.split("train")
        parts.append(split)
        union_rows.append(np.arange(offset, offset + len(split)))
        offset += len(split)
    return FitData(concatenate_splits(parts), np.concatenate(union_rows), prepared.split("val"))


def head_training(config: PretrainConfig) -> TrainConfig:
    """After a self-supervised objective: the head alone for `probe_epochs`, the encoder's BatchNorm fixed."""
    return replace(config.train, schedule="frozen", frozen_bn="eval", epochs=max(config.probe_epochs, 1))


def pretrain(config: PretrainConfig, *, nested: bool = False, resume_run_id: str | None = None,
             register: bool = True, axes: dict | None = None, parent_run_id: str | None = None) -> StageResult:
    """Train on the source and log the model; register `ecgtl-pretrained` unless `register=False`."""
    config.validate()
    objective_class(config.objective).check_pretraining(config)
    check_training(config.train)
    tracking.configure()
    prepared, rows = load_data(config.data, config.train.seed)
    extras = load_extra_data(config)
    torch.manual_seed(config.train.seed)
    model = create_model(config.model, len(prepared.classes), n_leads=len(parse_leads(config.data.leads)))
    name = run_name(runs.PRETRAIN, config.model, config.data, config.train.seed, axes)
    source = parse_spec(config.data.spec).short_name
    tags = {**stage_tags(runs.PRETRAIN, "scratch", source, source, config.data, config.train, config, axes),
            runs.OBJECTIVE: config.objective}
    objective = objective_class(config.objective).for_pretraining(config, (prepared.split("train"), rows))
    resume = resume_run_id is not None
    with tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id,
                            system_metrics=config.train.system_metrics, parent_run_id=parent_run_id) as run_id:
        run = TrainingRun(prepared, rows, config.data, runs.PRETRAIN, run_id,
                          extra={"spec": config.data.spec, "objective": config.objective}, also_trained_on=extras)
        datasets = log_inputs(run)
        labelled = bool(prepared.split("train").labels[rows].any())
        head_trained, train = True, config.train
        with timing.phase(runs.PRETRAIN):
            pipeline = fit_pipeline(config.data, config.train, prepared, rows)
            if objective.uses_labels:
                model.init_head_bias(training_priors(prepared, rows))
                fitted = fit_step(model, objective, FitData.of(prepared, rows), train, pipeline, run_id, resume=resume)
            else:
                fit_step(model, objective, unlabelled_union(prepared, rows, extras), config.train, pipeline, run_id,
                         resume=resume)
                head_trained, train = labelled and config.probe_epochs > 0, head_training(config)
                if head_trained:  # the head alone on the labels: the registered model gets a report
                    model.init_head_bias(training_priors(prepared, rows))
                    fitted = fit_step(model, Supervised(), FitData.of(prepared, rows), train, pipeline, run_id,
                                      resume=resume)
        report = (evaluate_step(model, pipeline, prepared, config.n_bootstrap, train.seed, fitted.best_val_logits)
                  if head_trained else None)
        if report is not None and train.explain_examples:
            explain_step(model, pipeline, prepared.split("test"), prepared.classes, train.explain_examples)
        registration = Registration(REGISTERED_PRETRAINED, tags={runs.OBJECTIVE: config.objective}) if register else None
        return publish_step(model, pipeline, report, run, datasets, registration)
