"""Evaluate any logged model on any dataset spec (synthetic, PTB-XL, or real CinC folders) and log the report.

Records are prepared at the model's sampling rate with the model's label set. With `split=all` every
readable record is scored (useful for small real folders); calibration is then fitted and assessed on the
same records, which the report's ECE-after numbers make optimistic: prefer `test` when a split exists.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtl import tracking
from ecgtl.config import config_hash, flatten
from ecgtl.data.cache import PrepareConfig, prepare
from ecgtl.data.dataset import LeadScaler, valid_lengths
from ecgtl.data.labels import shared18_snomed
from ecgtl.data.sources import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.report import evaluate_predictions
from ecgtl.inference import load_bundle
from ecgtl.stages.common import DEFAULT_TARGET, StageResult
from ecgtl.training.loop import predict_logits

SPLIT_CHOICES = ("test", "val", "all")


@dataclass(frozen=True)
class EvaluateConfig:
    model_uri: str = "models:/ecgtl-finetuned@champion"
    spec: str = DEFAULT_TARGET
    split: str = "test"
    split_seed: int = 0
    n_bootstrap: int = 1000
    challenge_weights: str = ""
    seed: int = 0


def evaluate(config: EvaluateConfig) -> StageResult:
    if config.split not in SPLIT_CHOICES:
        raise EcgtlError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {config.split!r}")
    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_bundle(tracking.download_model(config.model_uri, Path(tmp)))
    prepared = prepare(PrepareConfig(spec=config.spec, fs=info.fs, label_set=info.label_set, split_seed=config.split_seed))
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    scaler = LeadScaler.from_dict(info.scaler)
    crop, stride = int(round(info.crop_s * info.fs)), int(round(info.stride_s * info.fs))

    def logits_of(names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        parts = [splits[n] for n in names if len(splits[n])]
        if not parts:
            raise EcgtlError(f"{config.spec}: no records in split(s) {', '.join(names)}")
        logits = np.concatenate([predict_logits(model, p.signals, valid_lengths(p), scaler, crop, stride,
                                                info.aggregation) for p in parts])
        return (np.concatenate([p.labels for p in parts]), logits,
                [r for p in parts for r in p.index["record_id"]])

    evaluated = ["train", "val", "test"] if config.split == "all" else [config.split]
    calibration = evaluated if config.split == "all" else ["val"]
    y_eval, z_eval, ids = logits_of(evaluated)
    y_cal, z_cal, _ = logits_of(calibration)
    class_codes = shared18_snomed(info.classes)
    report = evaluate_predictions(y_cal, z_cal, y_eval, z_eval, info.classes, n_bootstrap=config.n_bootstrap,
                                  seed=config.seed, challenge_weights=config.challenge_weights or None,
                                  class_codes=class_codes)
    print(report.summary(), file=sys.stderr)
    target = parse_spec(config.spec).short_name
    tags = {"ecgtl.stage": "evaluate", "ecgtl.target": target, "ecgtl.label_set": info.label_set,
            "ecgtl.fs": f"{info.fs:g}", "ecgtl.model_uri": config.model_uri, "ecgtl.config_hash": config_hash(config)}
    with tracking.stage_run(f"evaluate-{info.architecture}-{target}-{config.split}", tags, flatten(config)) as run_id:
        tracking.log_evaluation_report(report)
        tracking.log_predictions(config.split, ids, y_eval, z_eval)
    return StageResult(run_id, config.model_uri, None, report.metrics)
