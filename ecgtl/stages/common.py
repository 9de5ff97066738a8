"""What the training stages share: data config, preparing a split with a training fraction, training a model
and reporting it (evaluation report, predictions, bundle, pyfunc model, registry)."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtl import tracking
from ecgtl.config import config_hash
from ecgtl.data.cache import PrepareConfig, PreparedData, cache_root, prepare
from ecgtl.data.dataset import LeadScaler, valid_lengths
from ecgtl.data.labels import snomed_codes_of
from ecgtl.data.lineage import TrainingRecords
from ecgtl.data.sources import dataset_identity, parse_spec
from ecgtl.data.splits import fraction_indices
from ecgtl.evaluation.report import EvaluationReport, evaluate_predictions
from ecgtl.inference import BundleInfo, save_bundle
from ecgtl.models import EcgModel, count_parameters
from ecgtl.training.loop import EpochResult, FitResult, TrainConfig, fit, predict_logits

DEFAULT_SOURCE = "synthetic:ptbxl?n=3000&seed=0"
DEFAULT_TARGET = "synthetic:g12ec?n=1500&seed=0"


@dataclass(frozen=True)
class DataConfig:
    spec: str = DEFAULT_TARGET
    fs: float = 100.0
    length_s: float = 10.0
    label_set: str = "shared18"
    split_seed: int = 0
    fraction: float = 1.0

    def prepare_config(self) -> PrepareConfig:
        return PrepareConfig(spec=self.spec, fs=self.fs, length_s=self.length_s, label_set=self.label_set,
                             split_seed=self.split_seed)


@dataclass
class StageResult:
    run_id: str
    model_uri: str | None
    version: int | None
    metrics: dict[str, float]
    reused: bool = False


def load_data(config: DataConfig, seed: int) -> tuple[PreparedData, np.ndarray]:
    """The prepared cache and the training rows of the seeded, stratified, nested `fraction`."""
    prepared = prepare(config.prepare_config())
    train = prepared.split("train")
    return prepared, fraction_indices(train.labels, config.fraction, seed)


def run_name(stage: str, architecture: str, data: DataConfig, seed: int) -> str:
    """e.g. finetune-xresnet1d50-g12ec-f0.10-s0"""
    return f"{stage}-{architecture}-{parse_spec(data.spec).short_name}-f{data.fraction:.2f}-s{seed}"


def stage_tags(stage: str, init: str, source: str, target: str, data: DataConfig, train: TrainConfig, config) -> dict[str, str]:
    tags = {"ecgtl.stage": stage, "ecgtl.init": init, "ecgtl.source": source, "ecgtl.target": target,
            "ecgtl.label_set": data.label_set, "ecgtl.fs": f"{data.fs:g}", "ecgtl.fraction": f"{data.fraction:g}",
            "ecgtl.seed": str(train.seed), "ecgtl.schedule": train.schedule, "ecgtl.config_hash": config_hash(config)}
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def checkpoint_path(run_id: str) -> Path:
    return cache_root() / "checkpoints" / run_id / "last.pt"


def train_and_report(model: EcgModel, prepared: PreparedData, train_rows: np.ndarray, train_config: TrainConfig,
                     run_id: str, registered_name: str, n_bootstrap: int, resume: bool = False,
                     extra: dict | None = None, new_head: bool = True,
                     inherited: list[TrainingRecords] | None = None) -> tuple[StageResult, FitResult, EvaluationReport]:
    """Fit, evaluate on val/test, log report + predictions + model, register. Runs inside an active run.

    The bundle records which records the model was trained on (`inherited` from a pretrained model, plus these).
    """
    train, val, test = (prepared.split(name) for name in ("train", "val", "test"))
    config = prepared.manifest["config"]
    trained_on = TrainingRecords.of(config["spec"], dataset_identity(config["spec"]), int(config["split_seed"]),
                                    list(train.index["record_id"].iloc[np.sort(train_rows)]))
    if new_head:
        model.init_head_bias(train.labels[train_rows].mean(axis=0))
    scaler = LeadScaler.fit(train.signals[np.sort(train_rows)] if len(train_rows) < len(train) else train.signals,
                            valid_lengths(train)[np.sort(train_rows)])
    fs = prepared.fs
    tracking.log_epoch(0, {"n_train_records": len(train_rows), "n_parameters": count_parameters(model)})

    def on_epoch(result: EpochResult) -> None:
        values = {"train_loss": result.train_loss, "val_loss": result.val_loss, "val_macro_auc": result.val_macro_auc,
                  "trainable_params": result.trainable_params, "epoch_seconds": result.seconds}
        values.update({f"lr_{name}": lr for (name, _), lr in zip(model.layer_groups(), result.lrs, strict=True)})
        tracking.log_epoch(result.epoch, values)

    fitted = fit(model, train, val, train_config, fs, scaler, train_rows=train_rows,
                 checkpoint_path=checkpoint_path(run_id), resume=resume, on_epoch=on_epoch)
    crop, stride = int(round(train_config.crop_s * fs)), int(round(train_config.stride_s * fs))
    logits = {name: predict_logits(model, split.signals, valid_lengths(split), scaler, crop, stride,
                                   train_config.aggregation) for name, split in (("val", val), ("test", test))}
    report = evaluate_predictions(val.labels, logits["val"], test.labels, logits["test"], prepared.classes,
                                  n_bootstrap=n_bootstrap, seed=train_config.seed,
                                  class_codes=snomed_codes_of(config["label_set"]))
    print(report.summary(), file=sys.stderr)
    tracking.log_evaluation_report(report)
    tracking.log_epoch(fitted.best_epoch, {"best_epoch": fitted.best_epoch,
                                           "best_val_macro_auc": fitted.best_val_macro_auc})
    tracking.log_predictions("test", list(test.index["record_id"]), test.labels, logits["test"])
    tracking.log_predictions("val", list(val.index["record_id"]), val.labels, logits["val"])
    info = BundleInfo(
        architecture=model.architecture, classes=list(prepared.classes), label_set=prepared.manifest["config"]["label_set"],
        fs=fs, crop_s=train_config.crop_s, stride_s=train_config.stride_s, aggregation=train_config.aggregation,
        scaler=scaler.to_dict(), calibrator=report.calibrators[report.primary_calibration].to_dict(),
        thresholds=report.thresholds.tolist(), extra=extra or {},
        training=[t.to_dict() for t in [*(inherited or []), trained_on]],
    )
    with tempfile.TemporaryDirectory() as tmp:
        bundle = save_bundle(Path(tmp) / "bundle", model, info)
        example = np.asarray(test.signals[:2], dtype=np.float32)
        model_uri = tracking.log_model(bundle, example)
    tracking.set_tags({"ecgtl.model_uri": model_uri})
    version = tracking.register(model_uri, registered_name)
    return StageResult(run_id, model_uri, version, report.metrics), fitted, report
