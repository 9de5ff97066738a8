"""What the training stages share: the data they load and the steps they compose, in the spirit of fastai's
`fine_tune` (each stage calls the steps itself; no step switches another off):

    prepared, rows = load_data(config.data, seed)                                # the cache, the training rows
    run      = TrainingRun(prepared, rows, config.data, stage, run_id, ...)      # what the run trains on
    datasets = log_inputs(run)                                                   # MLflow dataset inputs
    pipeline = fit_pipeline(config.data, config.train, prepared, rows)           # the input contract
    fitted   = fit_step(model, objective, FitData.of(prepared, rows), config.train, pipeline, run_id)
    report   = evaluate_step(model, pipeline, prepared, n_bootstrap, seed, fitted.best_val_logits)  # -> report
    explain_step(model, pipeline, test, classes, per_class)                      # attributions (explain.py)
    result   = publish_step(model, pipeline, report, run, datasets, registration)  # bundle, card, registry

`publish_step` logs the model and its card, and registers it when the stage hands it a `Registration` (ablation
cells and tuning trials hand none: they never create registry versions or move `challenger`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgtl import model_card, runs, serving, timing, tracking
from ecgtl.config import reuse_key
from ecgtl.data.cache import PreparedData, SplitData, prepare
from ecgtl.data.dataset import valid_lengths
from ecgtl.data.labels import snomed_codes_of
from ecgtl.data.lineage import CONTEXTS, SplitDataset, TrainingRecords
from ecgtl.data.sources import dataset_identity
from ecgtl.data.spec import parse_spec
from ecgtl.data.splits import fraction_indices
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.report import EvaluationReport, check_class_names, evaluate_predictions
from ecgtl.inference import BundleInfo, save_bundle
from ecgtl.inputs import leads_label, parse_leads
from ecgtl.models import count_parameters
from ecgtl.models.base import EcgModel
from ecgtl.paths import cache_root
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import DataConfig
from ecgtl.training.config import TrainConfig
from ecgtl.training.distributed import launched, local_rank_zero_first
from ecgtl.training.loop import EpochResult, FitResult, fit
from ecgtl.training.objectives.base import Objective

EXPLANATIONS_PAGE = "evaluation/explanations.html"
EM_CALIBRATION = "platt"  # stored for label_shift=em: a per-class bias as well as a slope
LEAD_IMPORTANCE_FILE = "evaluation/lead_importance.csv"
EXPLANATION_EXAMPLE_FILE = "evaluation/explanation_example.json"


@dataclass
class StageResult:
    run_id: str
    model_uri: str | None
    version: int | None
    metrics: dict[str, float]
    reused: bool = False


@dataclass
class Scores:
    """Logits of a model on the val and test splits, with labels and record ids."""

    val_labels: np.ndarray
    val_logits: np.ndarray
    test_labels: np.ndarray
    test_logits: np.ndarray
    val_ids: list[str]
    test_ids: list[str]


def load_data(config: DataConfig, seed: int) -> tuple[PreparedData, np.ndarray]:
    """The prepared cache and the training rows of the seeded, stratified, nested `fraction`."""
    with timing.phase("prepare"), local_rank_zero_first():  # under torchrun one process per machine prepares
        prepared = prepare(config.validate().prepare_config())
    check_class_names(prepared.classes)  # their metric keys, before anything trains
    train = prepared.split("train")
    return prepared, fraction_indices(train.labels, config.fraction, seed)


def fit_pipeline(data: DataConfig, train: TrainConfig, prepared: PreparedData, rows: np.ndarray) -> InputPipeline:
    """The input pipeline of a run, its scaler fitted on the training rows."""
    pipeline = InputPipeline(fs=prepared.fs, leads=parse_leads(data.leads), domain=data.domain, crop_s=train.crop_s,
                             stride_s=train.stride_s, aggregation=train.aggregation, scaling=data.scaling)
    split = prepared.split("train")
    ordered = np.sort(rows)
    signals = split.signals[ordered] if len(ordered) < len(split) else split.signals
    return pipeline.fit_scaler(signals, valid_lengths(split)[ordered])


def run_name(stage: str, architecture: str, data: DataConfig, seed: int, axes: dict | None = None) -> str:
    """e.g. finetune-xresnet1d50-g12ec-f0.10-s0 (see `runs.run_name`)."""
    return runs.run_name(stage, architecture, parse_spec(data.spec).short_name, data.fraction, seed, axes)


def stage_tags(stage: str, init: str, source: str, target: str, data: DataConfig, train: TrainConfig, config,
               axes: dict | None = None) -> dict[str, str]:
    tags = {runs.STAGE: stage, runs.INIT: init, runs.SOURCE: source, runs.TARGET: target,
            runs.LABEL_SET: data.label_set, runs.FS: f"{data.fs:g}", runs.FRACTION: f"{data.fraction:g}",
            runs.SEED: str(train.seed), runs.SCHEDULE: train.schedule, runs.LEADS: leads_label(parse_leads(data.leads)),
            runs.DOMAIN: data.domain, runs.CONFIG_HASH: reuse_key(config), **runs.axis_tags(axes or {})}
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def checkpoint_path(run_id: str, objective: str = "supervised") -> Path:
    """The run's last-epoch checkpoint of one objective (for `--resume`); deleted once the run logged its model."""
    return cache_root() / "checkpoints" / run_id / f"{objective}.pt"


def discard_checkpoint(run_id: str) -> None:
    """A run that is complete (or, like a tuning trial, can never be resumed) keeps no checkpoint: its model and
    optimiser state would only fill the cache with every cell and trial."""
    shutil.rmtree(checkpoint_path(run_id).parent, ignore_errors=True)


def split_datasets(prepared: PreparedData, leads: tuple[str, ...], rows_of: dict[str, np.ndarray | None], *,
                   context: str | None = None, inherited: list[TrainingRecords] | None = None) -> list[SplitDataset]:
    """The splits a run used as datasets (`rows_of[split]`: the rows used, None for all), plus the training data
    of the model it started from. `context` overrides each split's own (evaluate tests on every split)."""
    config = prepared.manifest["config"]
    short_name = parse_spec(config["spec"]).short_name
    datasets = []
    for split, rows in rows_of.items():
        part = prepared.split(split)
        chosen = np.arange(len(part)) if rows is None else np.sort(rows)
        datasets.append(SplitDataset.of(
            short_name=short_name, split=split, context=context or CONTEXTS[split], spec=config["spec"],
            cache_key=prepared.manifest["key"], path=str(prepared.path),
            record_ids=list(part.index["record_id"].iloc[chosen]), labels=part.labels[chosen],
            classes=prepared.classes, fs=prepared.fs, samples=int(prepared.manifest["samples"]), leads=leads))
    datasets += [SplitDataset.of_training_records(records, parse_spec(records.spec).short_name)
                 for records in inherited or []]
    return datasets


# ------------------------------------------------------------------------------------------------ steps
@dataclass(frozen=True)
class Registration:
    """Where a stage's model goes in the registry: the registered name, whether a first version also becomes
    `champion` (tune's final model never does: that is the promotion gate's job), and tags for the version."""

    name: str
    champion_if_first: bool = True
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainingRun:
    """What one training run trains on and the lineage its model carries: the prepared data and training rows,
    the data config, the stage (pretrain, finetune, scratch), the run, the training records of the model it
    started from, what the bundle's `extra` records (spec, objective, pretrained URI), and the prepared data of
    more datasets whose training splits it also learnt from (a self-supervised objective's `extra_specs`)."""

    prepared: PreparedData
    rows: np.ndarray
    data: DataConfig
    stage: str
    run_id: str
    inherited: list[TrainingRecords] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    also_trained_on: list[PreparedData] = field(default_factory=list)


@dataclass(frozen=True)
class FitData:
    """The records one fit trains on (`train` split, its `rows`) and validates on."""

    train: SplitData
    rows: np.ndarray
    val: SplitData

    @classmethod
    def of(cls, prepared: PreparedData, rows: np.ndarray) -> FitData:
        return cls(prepared.split("train"), rows, prepared.split("val"))


def check_training(train: TrainConfig) -> None:
    """The training options that name something on this machine (the device; a compiler under `compile`),
    checked before any data are prepared or a run is opened."""
    from ecgtl.training.accelerator import check_training as check

    check(train.device, train.compile)


def refuse_torchrun(stage: str) -> None:
    """Stages that spread their own work (trials, cells) over workers do not run under torchrun."""
    if launched():
        raise EcgtlError(f"{stage} spreads its trials or cells over workers itself (--workers, --jobs, a shared "
                         "storage); run it without torchrun")


def training_priors(prepared: PreparedData, rows: np.ndarray) -> np.ndarray:
    """Each class's prevalence in the training rows: where a new head's output bias starts."""
    return prepared.split("train").labels[rows].mean(axis=0)


def log_inputs(run: TrainingRun) -> list[SplitDataset]:
    """Log the splits the run uses (the training splits of `also_trained_on` too, and the training data of the
    model it started from) as dataset inputs."""
    leads = parse_leads(run.data.leads)
    datasets = split_datasets(run.prepared, leads, {"train": run.rows, "val": None, "test": None},
                              inherited=run.inherited)
    for more in run.also_trained_on:
        datasets += split_datasets(more, leads, {"train": None})
    with timing.phase("logging"):
        tracking.log_datasets(datasets)
    return datasets


def fit_step(model: EcgModel, objective: Objective, data: FitData, train_config: TrainConfig,
             pipeline: InputPipeline, run_id: str, *, resume: bool = False, on_epoch=None) -> FitResult:
    """Train with `objective`, logging every epoch to the active run under the objective's metric names;
    `on_epoch` is called after logging (pruning hooks). The checkpoint is the run's, one per objective."""
    name = objective.metric
    tracking.log_epoch(0, {name("n_train_records"): len(data.rows), name("n_parameters"): count_parameters(model)})

    def log_and_hook(result: EpochResult) -> None:
        values = {name("train_loss"): result.train_loss, name("val_loss"): result.val_loss,
                  name("val_macro_auc"): result.val_macro_auc, name("trainable_params"): result.trainable_params,
                  name("epoch_seconds"): result.seconds}
        values.update({name(f"lr_{group}"): lr
                       for (group, _), lr in zip(objective.layer_groups(model), result.lrs, strict=True)})
        tracking.log_epoch(result.epoch, values)
        if on_epoch is not None:
            on_epoch(result)

    fitted = fit(model, data.train, data.val, train_config, pipeline, objective, train_rows=data.rows,
                 checkpoint_path=checkpoint_path(run_id, objective.name), resume=resume, on_epoch=log_and_hook)
    tracking.log_epoch(fitted.best_epoch, {name("best_epoch"): fitted.best_epoch,
                                           f"best_{objective.signal}": fitted.best_signal})
    return fitted


def score_step(model: EcgModel, pipeline: InputPipeline, prepared: PreparedData,
               val_logits: np.ndarray | None = None) -> Scores:
    """The model's val and test logits. `val_logits`: those the fit computed for the state the model ended in
    (`FitResult.best_val_logits`, the same `predict_logits` on the same split), reused rather than inferred
    again; None where the fit kept none or the outputs changed after it (a label-shift offset)."""
    val, test = prepared.split("val"), prepared.split("test")
    if val_logits is None:
        val_logits = pipeline.predict_logits(model, val.signals, valid_lengths(val))
    test_logits = pipeline.predict_logits(model, test.signals, valid_lengths(test))
    return Scores(val.labels, val_logits, test.labels, test_logits, list(val.index["record_id"]),
                  list(test.index["record_id"]))


def report_step(scores: Scores, prepared: PreparedData, n_bootstrap: int, seed: int) -> EvaluationReport:
    """Evaluate on test (calibration fitted on val), print the summary, log report and logits to the run."""
    with timing.phase("evaluation"):
        report = evaluate_predictions(scores.val_labels, scores.val_logits, scores.test_labels, scores.test_logits,
                                      prepared.classes, n_bootstrap=n_bootstrap, seed=seed,
                                      class_codes=snomed_codes_of(prepared.manifest["config"]["label_set"]))
    print(report.summary(), file=sys.stderr)
    with timing.phase("logging"):
        tracking.log_evaluation_report(report)
        tracking.log_predictions("test", scores.test_ids, scores.test_labels, scores.test_logits)
        tracking.log_predictions("val", scores.val_ids, scores.val_labels, scores.val_logits)
    return report


def evaluate_step(model: EcgModel, pipeline: InputPipeline, prepared: PreparedData, n_bootstrap: int,
                  seed: int, val_logits: np.ndarray | None = None) -> EvaluationReport | None:
    """score -> report on the run's own val/test splits (`val_logits`: see `score_step`); None (and a note) when
    they hold no labels: a model trained on data without diagnoses has nothing to report."""
    if not (prepared.split("test").labels.any() and prepared.split("val").labels.any()):
        print(f"{prepared.manifest['config']['spec']}: no labels in its val/test splits; the model is logged "
              "without an evaluation report", file=sys.stderr)
        return None
    with timing.phase("evaluation"):
        scores = score_step(model, pipeline, prepared, val_logits)
    return report_step(scores, prepared, n_bootstrap, seed)


def explain_step(model: EcgModel, pipeline: InputPipeline, split: SplitData, classes: list[str],
                 per_class: int) -> None:
    """Explain `per_class` records of `split` for every class with positives there (ecgtl/explain.py) and log
    the page, the lead-importance table and the first example (for the dashboard) under `evaluation/`."""
    from ecgtl import explain

    if pipeline.domain != "time":
        return  # an FFT input has no per-sample attribution to draw
    with timing.phase("evaluation"):
        examples = explain.class_examples(model, pipeline, split.signals, split.labels, list(classes),
                                          per_class=per_class, lengths=valid_lengths(split),
                                          record_ids=list(split.index["record_id"]))
        if not examples:
            return
        tracking.log_text(explain.explanations_page(examples, "ecgtl: which leads and beats drive each class"),
                          EXPLANATIONS_PAGE)
        tracking.log_text(explain.dataset_lead_importance(examples).to_csv(index=False), LEAD_IMPORTANCE_FILE)
        tracking.log_text(json.dumps(next(iter(examples.values()))[0].to_dict()), EXPLANATION_EXAMPLE_FILE)


def training_records(prepared: PreparedData, rows: np.ndarray | None = None) -> TrainingRecords:
    """The records of `prepared`'s training split a model learnt from (`rows`, default all), for leak guards."""
    config = prepared.manifest["config"]
    train = prepared.split("train")
    chosen = np.arange(len(train)) if rows is None else np.sort(rows)
    return TrainingRecords.of(config["spec"], dataset_identity(config["spec"]), int(config["split_seed"]),
                              list(train.index["record_id"].iloc[chosen]))


def bundle_step(model: EcgModel, pipeline: InputPipeline, report: EvaluationReport | None, run: TrainingRun) -> str:
    """Log the model (weights + pipeline + calibrator + thresholds + training records) as the run's pyfunc.
    Without a report (an encoder pretrained on data without labels) it has no calibrator and no thresholds."""
    prepared, rows = run.prepared, run.rows
    config = prepared.manifest["config"]
    train = prepared.split("train")
    architecture = model.architecture_config()  # a configured architecture's options, to rebuild it
    trained_on = [training_records(prepared, rows)] + [training_records(more) for more in run.also_trained_on]
    info = BundleInfo(
        architecture=model.architecture, classes=list(prepared.classes), label_set=config["label_set"],
        pipeline=pipeline.to_dict(),
        calibrator=report.calibrators[report.primary_calibration].to_dict() if report is not None else None,
        posterior_calibrator=report.calibrators[EM_CALIBRATION].to_dict()
        if report is not None and EM_CALIBRATION in report.calibrators else None,
        thresholds=report.thresholds.tolist() if report is not None else None,
        extra={**run.extra, **({"architecture_config": architecture} if architecture is not None else {})},
        training=[t.to_dict() for t in [*run.inherited, *trained_on]],
        train_priors=train.labels[np.sort(rows)].mean(axis=0).tolist() if len(rows) else None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        bundle = save_bundle(Path(tmp) / "bundle", model, info)
        example = np.asarray(prepared.split("test").signals[:2], dtype=np.float32)
        model_uri = tracking.log_model(bundle, example, python_model=serving.pyfunc_model(),
                                       signature=serving.signature(pipeline.fs, info.classes),
                                       metadata={"ecgtl_input": serving.input_description(pipeline.fs, info.classes),
                                                 "ecgtl_pipeline": pipeline.describe()})
    tracking.set_tags({runs.MODEL_URI: model_uri})
    return model_uri


def publish_step(model: EcgModel, pipeline: InputPipeline, report: EvaluationReport | None, run: TrainingRun,
                 datasets: list[SplitDataset], registration: Registration | None) -> StageResult:
    """The end of every training stage: the model bundle and its card logged to the run, a registry version made
    when `registration` names where (with the card as its description), the run's checkpoints deleted."""
    prepared = run.prepared
    with timing.phase("logging"):
        model_uri = bundle_step(model, pipeline, report, run)
        card = model_card.render(model_card.ModelFacts(
            registered_name=registration.name if registration else "(not registered)",
            architecture=model.architecture, stage=run.stage, run_id=run.run_id, classes=tuple(prepared.classes),
            label_set=prepared.manifest["config"]["label_set"], input_contract=pipeline.describe(),
            datasets=tuple(datasets), metrics=report.metrics if report else {},
            thresholds=tuple(float(v) for v in report.thresholds) if report else (),
            primary_calibration=report.primary_calibration if report else "none",
            champion_if_first=registration.champion_if_first if registration else True,
            started_from=model_card.started_from(run.extra)))
        tracking.log_text(card, model_card.CARD_FILE)
        version = None
        if registration is not None:
            version = tracking.register(model_uri, registration.name, registration.champion_if_first,
                                        description=card,
                                        tags={**model_card.dataset_tags(datasets), **registration.tags})
    discard_checkpoint(run.run_id)
    return StageResult(run.run_id, model_uri, version, report.metrics if report else {})
