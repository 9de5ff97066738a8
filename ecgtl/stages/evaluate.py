"""Evaluate any logged model on any dataset spec (synthetic, PTB-XL, or real CinC folders) and log the report.

Records are prepared at the model's sampling rate (or read at `record_fs` first: resampled to the model's rate, or,
with `rate_policy=native`, read there by an S4D model with its step scaled) with the model's label set (`--label_set` may name another
set with the same classes' codes, e.g. evaluate a `cinc2021` model with its own set). Nothing is fitted on the
records being scored unless asked:
- by default the calibrator and F1 thresholds stored in the model bundle (fitted on the model's own
  validation split) are applied as they are;
- `calibration_fraction > 0` refits all calibrators and thresholds on a seeded, stratified part of the
  evaluated records and reports on the rest only (so `test_n_records` drops by that part).

Label shift (`label_shift`, evaluation/label_shift.py): the model's outputs moved from its training priors
(stored in the bundle) to the evaluated dataset's, after calibration: `prior` takes them from the
evaluated dataset's training split, `em` estimates them from the outputs alone (a target without labels).
Both read, and correct, the bias-corrected posteriors (the bundle's per-class Platt scaling, so the report's
calibrated keys are `test_ece_platt`...): a temperature alone leaves a bias that EM would amplify.

Leak guard: the bundle lists the records the model (and the model it was fine-tuned from) was trained on.
Evaluated records among them are counted (`test_n_records_seen_in_training`, tag `ecgtl.leak`) and reported;
`strict` refuses to evaluate then. PTB-XL records inside CinC releases (`HR00001` = PTB-XL ecg_id 1) count.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ecgtl import runs, tracking
from ecgtl.config import flatten, reuse_key
from ecgtl.data.cache import prepare
from ecgtl.data.dataset import valid_lengths
from ecgtl.data.labels import snomed_codes_of
from ecgtl.data.lineage import CONTEXTS, TrainingRecords, overlaps
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.sources import dataset_identity
from ecgtl.data.spec import parse_spec
from ecgtl.data.splits import fraction_indices
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.calibration import calibrated_probabilities
from ecgtl.evaluation.challenge import load_weights
from ecgtl.evaluation.label_shift import Correction, correction_for
from ecgtl.evaluation.report import StoredCalibration, check_class_names, evaluate_predictions
from ecgtl.inference import load_bundle
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.common import StageResult, explain_step, split_datasets
from ecgtl.stages.configs import EvaluateConfig


def _label_shift_correction(config: EvaluateConfig, info, prepared, logits: np.ndarray) -> Correction | None:
    """The model's training priors moved to the evaluated dataset's: its train split's (`prior`) or those EM
    finds in the model's calibrated outputs on the evaluated records (`em`, no labels read)."""
    if config.label_shift == "none":
        return None
    source = info.priors_for(list(info.classes), config.model_uri)
    if config.label_shift == "prior":
        train = prepared.split("train")
        if not len(train) or not train.labels.any():
            raise EcgtlError(f"{config.spec}: no labelled training records for label_shift=prior; use em")
        return correction_for("prior", source, target=train.labels.mean(axis=0))
    return correction_for("em", source, probabilities=calibrated_probabilities(logits, info.em_calibrator()))


def reading(config: EvaluateConfig, model, info) -> tuple[InputPipeline, float, float]:
    """How the evaluated records reach the model: (its pipeline, the cache's rate, the rate records are first
    brought to). `record_fs` 0 or the model's rate: the cache reads them at the model's rate. Else `resample`:
    the cache brings them to `record_fs`, then to the model's rate (as records arriving at that rate); `native`:
    the cache holds them at `record_fs` and the model reads them there with its step scaled (S4D; a CNN refuses,
    before anything is read)."""
    pipeline = info.input_pipeline()
    if not config.record_fs or config.record_fs == info.fs:
        return pipeline, info.fs, 0.0
    if config.rate_policy == "resample":
        return pipeline, info.fs, config.record_fs
    model.set_rate_scale(info.fs / config.record_fs)
    return replace(pipeline, fs=config.record_fs), config.record_fs, 0.0


def evaluate(config: EvaluateConfig) -> StageResult:
    config.validate()
    if config.challenge_weights:
        load_weights(config.challenge_weights)  # a bad table is refused before any inference
    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_bundle(tracking.download_model(config.model_uri, Path(tmp)))
    check_class_names(info.classes)
    pipeline, fs, record_fs = reading(config, model, info)
    prepared = prepare(PrepareConfig(spec=config.spec, fs=fs, label_set=info.label_set, split_seed=config.split_seed,
                                     record_fs=record_fs))
    names = ["train", "val", "test"] if config.split == "all" else [config.split]
    parts = [prepared.split(n) for n in names if len(prepared.split(n))]
    if not parts:
        raise EcgtlError(f"{config.spec}: no records in split(s) {', '.join(names)}")
    logits = np.concatenate([pipeline.predict_logits(model, p.signals, valid_lengths(p)) for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    ids = [r for p in parts for r in p.index["record_id"]]

    leaks = overlaps([TrainingRecords.from_dict(t) for t in info.training], dataset_identity(config.spec), ids)
    seen = {record_id for leak in leaks for record_id in leak.record_ids}
    for leak in leaks:
        print(f"warning: {leak.describe(len(ids))}", file=sys.stderr)
    if leaks and config.strict:
        raise EcgtlError(f"{config.spec}: {leaks[0].describe(len(ids))}; refusing to evaluate (strict)")

    calibrate_on = np.zeros(len(ids), dtype=bool)
    if config.calibration_fraction > 0:
        calibrate_on[fraction_indices(labels, config.calibration_fraction, config.seed)] = True
    report_on, refit = ~calibrate_on, bool(calibrate_on.any())
    if not refit and not info.calibrator:
        raise EcgtlError(f"{config.model_uri}: the bundle holds no calibrator; pass calibration_fraction > 0")
    correction = _label_shift_correction(config, info, prepared, logits[report_on])
    if correction is not None and correction.warning():
        print(f"warning: {correction.warning()}", file=sys.stderr)
    report = evaluate_predictions(
        labels[calibrate_on] if refit else None, logits[calibrate_on] if refit else None,
        labels[report_on], logits[report_on], info.classes, n_bootstrap=config.n_bootstrap, seed=config.seed,
        challenge_weights=config.challenge_weights or None, class_codes=snomed_codes_of(info.label_set),
        stored=None if refit else StoredCalibration.from_bundle(
            info.posterior_calibrator if correction is not None and info.posterior_calibrator else info.calibrator,
            info.thresholds),
        correction=correction)
    reported_ids = [record_id for record_id, keep in zip(ids, report_on, strict=True) if keep]
    report.metrics["test_n_records_seen_in_training"] = float(sum(record_id in seen for record_id in reported_ids))
    print(report.summary(), file=sys.stderr)
    target = parse_spec(config.spec).short_name
    tags = {runs.STAGE: runs.EVALUATE, runs.TARGET: target, runs.LABEL_SET: info.label_set, runs.FS: f"{info.fs:g}",
            runs.MODEL_URI: config.model_uri, runs.CONFIG_HASH: reuse_key(config),
            runs.CALIBRATION: "refit" if refit else "stored", runs.LEAK: str(len(seen)),
            runs.LABEL_SHIFT: config.label_shift}
    with tracking.stage_run(f"evaluate-{info.architecture}-{target}-{config.split}", tags, flatten(config)) as run_id:
        tracking.log_datasets(split_datasets(prepared, pipeline.leads, {n: None for n in names if len(prepared.split(n))},
                                             context=CONTEXTS["test"]))
        tracking.log_evaluation_report(report)
        tracking.log_predictions(config.split, reported_ids, labels[report_on], logits[report_on])
        if config.explain_examples:
            explain_step(model, pipeline, parts[0], info.classes, config.explain_examples)
    return StageResult(run_id, config.model_uri, None, report.metrics)
