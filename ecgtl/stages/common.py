"""What the training stages share: the data config, and training as small steps composed in the spirit of
fastai's `fine_tune`:

    prepared, rows = load_data(config.data, seed)
    pipeline = fit_pipeline(config.data, config.train, prepared, rows)
    fitted   = fit_step(model, prepared, rows, config.train, pipeline, run_id)       # per-epoch metrics
    scores   = score_step(model, pipeline, prepared)                                 # val/test logits
    report   = report_step(scores, prepared, n_bootstrap, seed)                      # metrics, figures, logits
    explain_step(model, pipeline, test, classes, per_class)                          # attributions (explain.py)
    uri      = bundle_step(model, pipeline, report, prepared, ...)                   # pyfunc model of the run
    version  = tracking.register(uri, name)                                          # only when asked

`train_model` runs them in order; ablation cells and tuning trials pass `register=False`, so they never
create registry versions or move `challenger`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
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
from ecgtl.evaluation.report import EvaluationReport, evaluate_predictions
from ecgtl.inference import BundleInfo, save_bundle
from ecgtl.inputs import leads_label, parse_leads
from ecgtl.models import count_parameters
from ecgtl.models.base import EcgModel
from ecgtl.paths import cache_root
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import DataConfig
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import EpochResult, FitResult, fit

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
    with timing.phase("prepare"):
        prepared = prepare(config.validate().prepare_config())
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


def checkpoint_path(run_id: str) -> Path:
    """The run's last-epoch checkpoint (for `--resume`); deleted once the run has logged its model."""
    return cache_root() / "checkpoints" / run_id / "last.pt"


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
def fit_step(model: EcgModel, prepared: PreparedData, rows: np.ndarray, train_config: TrainConfig,
             pipeline: InputPipeline, run_id: str, *, resume: bool = False, new_head: bool = True,
             on_epoch=None, loss_weights: tuple[np.ndarray, np.ndarray] | None = None,
             augment=None) -> FitResult:
    """Train, logging every epoch to the active run; `on_epoch` is called after logging (pruning hooks)."""
    train, val = prepared.split("train"), prepared.split("val")
    if new_head:
        model.init_head_bias(train.labels[rows].mean(axis=0))
    tracking.log_epoch(0, {"n_train_records": len(rows), "n_parameters": count_parameters(model)})

    def log_and_hook(result: EpochResult) -> None:
        values = {"train_loss": result.train_loss, "val_loss": result.val_loss, "val_macro_auc": result.val_macro_auc,
                  "trainable_params": result.trainable_params, "epoch_seconds": result.seconds}
        values.update({f"lr_{name}": lr for (name, _), lr in zip(model.layer_groups(), result.lrs, strict=True)})
        tracking.log_epoch(result.epoch, values)
        if on_epoch is not None:
            on_epoch(result)

    fitted = fit(model, train, val, train_config, pipeline, train_rows=rows, checkpoint_path=checkpoint_path(run_id),
                 resume=resume, on_epoch=log_and_hook, loss_weights=loss_weights, augment=augment)
    tracking.log_epoch(fitted.best_epoch, {"best_epoch": fitted.best_epoch, "best_val_macro_auc": fitted.best_val_macro_auc})
    return fitted


def score_step(model: EcgModel, pipeline: InputPipeline, prepared: PreparedData) -> Scores:
    val, test = prepared.split("val"), prepared.split("test")
    logits = {name: pipeline.predict_logits(model, split.signals, valid_lengths(split))
              for name, split in (("val", val), ("test", test))}
    return Scores(val.labels, logits["val"], test.labels, logits["test"], list(val.index["record_id"]),
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


def explain_step(model: EcgModel, pipeline: InputPipeline, split: SplitData, classes: list[str],
                 per_class: int) -> None:
    """Explain `per_class` records of `split` for every class with positives there (ecgtl/explain.py) and log
    the page, the lead-importance table and the first example (for the dashboard) under `evaluation/`."""
    if pipeline.domain != "time":
        return  # an FFT input has no per-sample attribution to draw
    try:
        from ecgtl import explain
    except ImportError:  # captum is the optional extra ecgtl[explain]
        print("no explanations on the report: pip install 'ecgtl[explain]' (Captum)", file=sys.stderr)
        return
    examples = explain.class_examples(model, pipeline, split.signals, split.labels, list(classes),
                                      per_class=per_class, lengths=valid_lengths(split),
                                      record_ids=list(split.index["record_id"]))
    if not examples:
        return
    tracking.log_text(explain.explanations_page(examples, "ecgtl: which leads and beats drive each class"),
                      EXPLANATIONS_PAGE)
    tracking.log_text(explain.dataset_lead_importance(examples).to_csv(index=False), LEAD_IMPORTANCE_FILE)
    tracking.log_text(json.dumps(next(iter(examples.values()))[0].to_dict()), EXPLANATION_EXAMPLE_FILE)


def bundle_step(model: EcgModel, pipeline: InputPipeline, report: EvaluationReport | None, prepared: PreparedData,
                rows: np.ndarray, *, extra: dict | None = None,
                inherited: list[TrainingRecords] | None = None) -> str:
    """Log the model (weights + pipeline + calibrator + thresholds + training records) as the run's pyfunc.
    Without a report (an encoder pretrained on data without labels) it has no calibrator and no thresholds."""
    config = prepared.manifest["config"]
    train = prepared.split("train")
    trained_on = TrainingRecords.of(config["spec"], dataset_identity(config["spec"]), int(config["split_seed"]),
                                    list(train.index["record_id"].iloc[np.sort(rows)]))
    info = BundleInfo(
        architecture=model.architecture, classes=list(prepared.classes), label_set=config["label_set"],
        pipeline=pipeline.to_dict(),
        calibrator=report.calibrators[report.primary_calibration].to_dict() if report is not None else None,
        posterior_calibrator=report.calibrators[EM_CALIBRATION].to_dict()
        if report is not None and EM_CALIBRATION in report.calibrators else None,
        thresholds=report.thresholds.tolist() if report is not None else None, extra=extra or {},
        training=[t.to_dict() for t in [*(inherited or []), trained_on]],
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


def train_model(model: EcgModel, prepared: PreparedData, rows: np.ndarray, data: DataConfig, train_config: TrainConfig,
                run_id: str, *, registered_name: str | None, n_bootstrap: int, resume: bool = False,
                extra: dict | None = None, new_head: bool = True, inherited: list[TrainingRecords] | None = None,
                on_epoch=None, champion_if_first: bool = True, stage: str = runs.FINETUNE,
                fit_model: bool = True, evaluate: bool = True, version_tags: dict[str, str] | None = None,
                pipeline: InputPipeline | None = None, loss_weights: tuple[np.ndarray, np.ndarray] | None = None,
                output_offsets: np.ndarray | None = None, augment=None) -> StageResult:
    """fit -> score -> report -> bundle -> (register when `registered_name`), inside the active run; `stage`
    names the training phase in the timing table. `pipeline`: one already fitted on `rows` (else fitted here).
    `fit_model=False` logs the model as it is (trained elsewhere); with `evaluate=False`, or without labels in val/test, there is no report (and the bundle has no
    calibrator): an encoder whose head was never trained has nothing to report. `loss_weights` weigh the BCE
    terms; `output_offsets` are added to the output bias after training (label-shift reweighting); `augment`
    transforms training batches (`fit`)."""
    datasets = split_datasets(prepared, parse_leads(data.leads), {"train": rows, "val": None, "test": None},
                              inherited=inherited)
    with timing.phase("logging"):
        tracking.log_datasets(datasets)
    with timing.phase(stage):
        pipeline = pipeline or fit_pipeline(data, train_config, prepared, rows)
        if fit_model:
            fit_step(model, prepared, rows, train_config, pipeline, run_id, resume=resume, new_head=new_head,
                     on_epoch=on_epoch, loss_weights=loss_weights, augment=augment)
        if output_offsets is not None:
            model.shift_head_bias(output_offsets)
    labelled = bool(prepared.split("test").labels.any() and prepared.split("val").labels.any())
    report = None
    if evaluate and labelled:
        with timing.phase("evaluation"):
            scores = score_step(model, pipeline, prepared)
        report = report_step(scores, prepared, n_bootstrap, train_config.seed)
        if train_config.explain_examples:
            with timing.phase("evaluation"):
                explain_step(model, pipeline, prepared.split("test"), prepared.classes, train_config.explain_examples)
    elif evaluate:
        print(f"{prepared.manifest['config']['spec']}: no labels in its val/test splits; the model is logged "
              "without an evaluation report", file=sys.stderr)
    with timing.phase("logging"):
        model_uri = bundle_step(model, pipeline, report, prepared, rows, extra=extra, inherited=inherited)
        card = model_card.render(model_card.ModelFacts(
            registered_name=registered_name or "(not registered)", architecture=model.architecture, stage=stage,
            run_id=run_id, classes=tuple(prepared.classes), label_set=prepared.manifest["config"]["label_set"],
            input_contract=pipeline.describe(), datasets=tuple(datasets), metrics=report.metrics if report else {},
            thresholds=tuple(float(v) for v in report.thresholds) if report else (),
            primary_calibration=report.primary_calibration if report else "none",
            champion_if_first=champion_if_first))
        tracking.log_text(card, model_card.CARD_FILE)
        version = tracking.register(model_uri, registered_name, champion_if_first, description=card,
                                    tags={**model_card.dataset_tags(datasets), **(version_tags or {})}
                                    ) if registered_name else None
    discard_checkpoint(run_id)
    return StageResult(run_id, model_uri, version, report.metrics if report else {})
