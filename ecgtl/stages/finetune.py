"""Fine-tune a pretrained model on the target dataset, or train the same model from scratch (the baseline).

Both go through one code path; `init` decides where the weights start; `label_shift` how the source's class
priors are corrected toward the target's (`label_shift_plan`). A pretrained model is taken from a
model URI (default `models:/ecgtl-pretrained@champion`). If that default does not exist yet, a pretraining
runs first as a nested run: `fallback_pretrain` (a function argument, not part of the config, so it is neither
an MLflow param nor in the reuse key), by default `PretrainConfig()` at the target's fs, leads and domain.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ecgtl import runs, timing, tracking
from ecgtl.config import flatten
from ecgtl.data.dataset import valid_lengths
from ecgtl.data.lineage import TrainingRecords
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.calibration import calibrated_probabilities
from ecgtl.evaluation.label_shift import Correction, correction_for, loss_weights
from ecgtl.evaluation.report import prior_metrics
from ecgtl.inference import BundleInfo, load_bundle
from ecgtl.inputs import input_mismatch, parse_leads
from ecgtl.models import create_model
from ecgtl.models.imported import encoder_for, imported_contract
from ecgtl.runs import is_imported_uri
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
from ecgtl.stages.configs import (
    DEFAULT_PRETRAINED,
    DEFAULT_SCRATCH_MODEL,
    FROZEN_INITS,
    PRETRAINED_INITS,
    REGISTERED,
    DataConfig,
    FinetuneConfig,
    PretrainConfig,
)
from ecgtl.stages.pretrain import pretrain
from ecgtl.training.config import TrainConfig
from ecgtl.training.objectives.supervised import Supervised


def scratch_config(config: FinetuneConfig) -> FinetuneConfig:
    """The fair baseline: same data, model, epochs and lr, random initialisation, everything trainable. The
    architecture is named (empty means DEFAULT_SCRATCH_MODEL), so both spellings share one reuse key."""
    return replace(config, init="scratch", model=config.model or DEFAULT_SCRATCH_MODEL,
                   train=replace(config.train, schedule="full", decay=1.0))


def effective_train(config: FinetuneConfig) -> TrainConfig:
    """The training a run does: its `train`, except that the frozen baselines (linear_probe, random_frozen) train
    the head alone at every epoch with the encoder's BatchNorm statistics fixed."""
    if config.init in FROZEN_INITS:
        return replace(config.train, schedule="frozen", frozen_bn="eval")
    return config.train


def default_fallback_pretrain(config: FinetuneConfig) -> PretrainConfig:
    """What runs when the default pretrained model does not exist yet: the default pretraining at the
    target's sampling rate, leads, input domain and scaling (and architecture, when one is named). Its report
    has no explanations: the user asked for the fine-tuned model, whose report has them (an explicit
    `ecgtl pretrain` explains its own; `explain_examples` is not in the reuse key, so both are the same run)."""
    base = PretrainConfig()
    data = replace(base.data, fs=config.data.fs, leads=config.data.leads, domain=config.data.domain,
                   scaling=config.data.scaling)
    return replace(base, data=data, model=config.model or base.model,
                   train=replace(base.train, explain_examples=0))


def _check_pipeline_matches(info, data: DataConfig, uri: str) -> None:
    trained, wanted = info.input_pipeline().contract, data.contract
    if input_mismatch(trained, wanted):
        raise EcgtlError(f"{uri} was trained on {trained.describe()}; data asks for {wanted.describe()}: "
                         f"pretrain with the same {' and '.join(input_mismatch(trained, wanted))}")


def check_pretrained(config: FinetuneConfig) -> None:
    """The pretrained model a run names exists (the default may not: it is pretrained first), and an imported
    encoder's file reads and was trained for the run's input, checked before any data are prepared or a run is
    opened."""
    uri = config.pretrained
    if config.init not in PRETRAINED_INITS:
        return
    if is_imported_uri(uri):
        problem = imported_contract(uri).problem(config.data.fs, parse_leads(config.data.leads), config.data.domain,
                                                 config.train.crop_s)
        if problem:
            raise EcgtlError(f"{uri} {problem}")
        return
    if uri != DEFAULT_PRETRAINED and not tracking.model_exists(uri):
        raise EcgtlError(f"{uri}: no such model in {tracking.tracking_uri()}")


@dataclass
class StartingPoint:
    """Where a fine-tuning (or scratch) run starts: the model, whether its head is new, its history."""

    model: object
    architecture: str
    new_head: bool
    inherited: list
    pretrained_uri: str
    source: str
    info: BundleInfo | None = None  # the pretrained bundle's description (None from scratch or an imported file)
    lineage: dict[str, str] = field(default_factory=dict)  # tags naming an imported source (its digest, layout)


def starting_point(config: FinetuneConfig, prepared, folder: Path,
                   fallback_pretrain: PretrainConfig | None = None) -> StartingPoint:
    """The initial model of a run: the pretrained bundle with a new head (or its own head, `head=reuse`, when
    the classes agree), or a randomly initialised model (`init=scratch`). Seeds torch for the new parts."""
    if config.init not in PRETRAINED_INITS:  # scratch, random_frozen
        torch.manual_seed(config.train.seed)
        architecture = config.model or DEFAULT_SCRATCH_MODEL
        model = create_model(architecture, len(prepared.classes), n_leads=len(parse_leads(config.data.leads)))
        return StartingPoint(model, architecture, True, [], "", "none")
    uri = config.pretrained
    if is_imported_uri(uri):
        return imported_start(config, prepared)
    if not tracking.model_exists(uri):
        if uri != DEFAULT_PRETRAINED:
            raise EcgtlError(f"{uri}: no such model in {tracking.tracking_uri()}")
        fallback = fallback_pretrain or default_fallback_pretrain(config)
        print(f"{uri} does not exist yet: pretraining on {fallback.data.spec} first (nested run)", file=sys.stderr)
        uri = pretrain(fallback, nested=True).model_uri
    model, info = load_bundle(tracking.download_model(uri, folder))
    if config.model and config.model != info.architecture:
        raise EcgtlError(f"model={config.model} but {uri} is a {info.architecture}; "
                         "leave model empty to fine-tune the pretrained architecture")
    _check_pipeline_matches(info, config.data, uri)
    torch.manual_seed(config.train.seed)  # a new head starts the same way in every run
    new_head = config.head == "new" or list(info.classes) != list(prepared.classes)
    if new_head:
        model.replace_head(len(prepared.classes))
    source = parse_spec(info.extra["spec"]).short_name if info.extra.get("spec") else "unknown"
    return StartingPoint(model, info.architecture, new_head, [TrainingRecords.from_dict(t) for t in info.training],
                         uri, source, info)


def imported_start(config: FinetuneConfig, prepared) -> StartingPoint:
    """An encoder from elsewhere (`torch:PATH`, `hf:...`; models/imported.py) with a new head, seeded like every
    new head; its digest, layout and licence go on the run, the bundle and the registered version."""
    torch.manual_seed(config.train.seed)
    encoder = encoder_for(config.pretrained, len(prepared.classes), len(parse_leads(config.data.leads)))
    if config.model and config.model != encoder.architecture:
        raise EcgtlError(f"model={config.model} but {config.pretrained} holds a {encoder.architecture}; "
                         "leave model empty to fine-tune the imported architecture")
    lineage = {runs.PRETRAINED_DIGEST: encoder.digest, runs.PRETRAINED_LAYOUT: encoder.layout,
               **({runs.PRETRAINED_LICENCE: encoder.licence} if encoder.licence else {})}
    scheme, _, reference = encoder.source.partition(":")
    short = reference if scheme == "hf" and not Path(reference).is_dir() else Path(reference).name
    return StartingPoint(encoder.model, encoder.architecture, True, [], encoder.source, f"{scheme}:{short}",
                         lineage=lineage)


@dataclass
class LabelShiftPlan:
    """What `finetune.label_shift` does to a run: the correction, the loss weights (of the supervised objective),
    the offsets added to the output bias after training."""

    correction: Correction | None = None
    loss_weights: tuple[np.ndarray, np.ndarray] | None = None
    output_offsets: np.ndarray | None = None


def label_shift_plan(config: FinetuneConfig, start: StartingPoint, prepared, rows: np.ndarray) -> LabelShiftPlan:
    """`prior`/`em`: the reused head's bias is moved here, before training; `reweight`: the loss weights and the
    offsets after training. The target's priors are its training rows' (`em`: estimated from the pretrained model's
    calibrated outputs on those rows, their labels unread)."""
    if config.label_shift == "none":
        return LabelShiftPlan()
    source = start.info.priors_for(list(prepared.classes), start.pretrained_uri)
    train = prepared.split("train")
    if config.label_shift == "em":
        pipeline = start.info.input_pipeline()
        ordered = np.sort(rows)
        logits = pipeline.predict_logits(start.model, train.signals[ordered], valid_lengths(train)[ordered])
        correction = correction_for("em", source,
                                    probabilities=calibrated_probabilities(logits, start.info.em_calibrator()))
    else:
        correction = correction_for("prior", source, target=train.labels[rows].mean(axis=0))
    if config.label_shift == "reweight":
        return LabelShiftPlan(replace(correction, method="reweight"), loss_weights(correction.source, correction.target),
                              correction.offsets)
    start.model.shift_head_bias(correction.offsets)
    return LabelShiftPlan(correction)


def finetune(config: FinetuneConfig, *, nested: bool = False, resume_run_id: str | None = None,
             register: bool = True, axes: dict | None = None, parent_run_id: str | None = None,
             fallback_pretrain: PretrainConfig | None = None, champion_if_first: bool = True) -> StageResult:
    """Fine-tune (or train from scratch) and log the model; register unless `register=False`."""
    config.validate()
    check_training(config.train)
    tracking.configure()
    check_pretrained(config)
    if not nested and parent_run_id is None:
        timing.reset()
    stage = runs.FINETUNE if config.init in PRETRAINED_INITS else runs.SCRATCH
    prepared, rows = load_data(config.data, config.train.seed)
    target = parse_spec(config.data.spec).short_name
    tags = stage_tags(stage, config.init, "none", target, config.data, config.train, config, axes)
    name = run_name(stage, config.model or DEFAULT_SCRATCH_MODEL, config.data, config.train.seed, axes)
    train = effective_train(config)
    with tempfile.TemporaryDirectory() as tmp, \
            tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id,
                               system_metrics=config.train.system_metrics, parent_run_id=parent_run_id) as run_id:
        start = starting_point(config, prepared, Path(tmp), fallback_pretrain)
        if config.init in PRETRAINED_INITS:
            tracking.set_tags({**start.lineage, runs.SOURCE: start.source, runs.PRETRAINED_URI: start.pretrained_uri,
                               runs.MLFLOW_RUN_NAME: run_name(stage, start.architecture, config.data, config.train.seed,
                                                              axes)})
        plan = label_shift_plan(config, start, prepared, rows)
        if plan.correction is not None and plan.correction.warning():
            print(f"warning: {plan.correction.warning()}", file=sys.stderr)
        if plan.correction is not None:
            tracking.set_tags({runs.LABEL_SHIFT: config.label_shift})
            tracking.log_epoch(0, prior_metrics("train", prepared.classes, plan.correction))
        model = start.model
        run = TrainingRun(prepared, rows, config.data, stage, run_id, start.inherited,
                          extra={"spec": config.data.spec, "pretrained": start.pretrained_uri, **start.lineage})
        datasets = log_inputs(run)
        with timing.phase(stage):
            pipeline = fit_pipeline(config.data, train, prepared, rows)
            if start.new_head:
                model.init_head_bias(training_priors(prepared, rows))
            fitted = fit_step(model, Supervised(loss_weights=plan.loss_weights), FitData.of(prepared, rows), train,
                              pipeline, run_id, resume=resume_run_id is not None)
            val_logits = fitted.best_val_logits
            if plan.output_offsets is not None:
                model.shift_head_bias(plan.output_offsets)
                val_logits = None  # the outputs moved after the fit: infer them again
        report = evaluate_step(model, pipeline, prepared, config.n_bootstrap, train.seed, val_logits)
        if report is not None and train.explain_examples:
            explain_step(model, pipeline, prepared.split("test"), prepared.classes, train.explain_examples)
        registration = Registration(REGISTERED[config.init], champion_if_first, dict(start.lineage)) if register else None
        result = publish_step(model, pipeline, report, run, datasets, registration)
        if not nested and parent_run_id is None:
            report_timing()
        return result


def report_timing() -> None:
    """The per-phase timing table: printed, and logged to the active run as `timing.txt`."""
    text = timing.table()
    print(text, file=sys.stderr)
    tracking.log_text(text + "\n", "timing.txt")
