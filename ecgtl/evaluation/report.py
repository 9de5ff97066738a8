"""One evaluation report from (labels, logits on val, logits on test, class names), for every stage.

Metric keys are stable and identical across stages, so runs line up in MLflow's compare view
(`{split}_{metric}[_{class}]`, a class's name with every character but letters, digits, `.`, `-` and `_` written
`_`, e.g. `test_auc_LAO_LAE`; the per-class table's `metric_name` column shows each one):

| key | meaning |
|---|---|
| `test_macro_auc`, `test_macro_auc_ci_low`, `test_macro_auc_ci_high` | macro AUC over the classes with at least 5 positive and 5 negative records (`metrics.macro_classes`), 95% bootstrap CI |
| `test_macro_auc_all_classes` | macro AUC over every class with a positive and a negative record (Strodthoff et al.'s convention; no CI: rare classes make resamples meaningless) |
| `test_auc_<CLASS>` (+ `_ci_low`, `_ci_high`) | per-class AUC with CI (absent for skipped classes) |
| `test_micro_auc`, `test_fmax` | micro AUC; Strodthoff's F-max |
| `test_ece`, `test_mce`, `test_brier`, `test_ece_classwise` | calibration of sigmoid(logits), pooled (see calibration.py) |
| `test_ece_<method>`, `test_mce_<method>`, `test_brier_<method>` | after a calibrator fitted on val: platt, temperature, temperature_per_class, isotonic (with a stored calibrator: that one only) |
| `test_macro_f1`, `test_macro_precision`, `test_macro_recall` | at per-class thresholds maximising F1 on val (or the stored thresholds) |
| `test_challenge_score` | the official CinC challenge metric: the model outputs every scored class of the weights table (`cinc2020`, `cinc2021` label sets) |
| `test_challenge_score_partial` | the same formula over only the scored classes the model has (e.g. 8 of shared18; no normal class, so the reference outputs nothing): not comparable to challenge results |
| `test_prior_source_<CLASS>`, `test_prior_target_<CLASS>`, `test_label_shift_em_iterations`, `test_label_shift_em_converged` | with a label-shift correction (`label_shift.py`): the priors it moved between; every other key is then of the corrected outputs (per-class AUC unchanged by construction) |
| `test_n_records`, `test_n_classes_evaluated`, `test_n_classes_in_macro`, `test_bootstrap_resamples` | context: classes with a defined AUC, classes the macro averages (per-epoch `val_macro_auc` is logged by training) |

Calibration is fitted on validation logits, or taken as stored with a model (`StoredCalibration`: the
calibrator and thresholds fitted on the model's own validation split), never on the records it is scored on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy.special import expit

from ecgtl.errors import EvaluationError
from ecgtl.evaluation import metrics as m
from ecgtl.evaluation.calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    calibration_summary,
    calibrator_from_dict,
    make_calibrator,
)
from ecgtl.evaluation.challenge import load_weights, weights_for
from ecgtl.evaluation.figures import reliability_figure, reliability_small_multiples, roc_figure
from ecgtl.evaluation.label_shift import Correction, shift_probabilities


def metric_class_name(name: str) -> str:
    """A class name as it appears in metric keys: every character MLflow refuses in a key, and `/` and spaces,
    written as `_` ('LAO/LAE' -> 'LAO_LAE', 'NORM (sinus)' -> 'NORM__sinus_'). The report's per-class table
    shows each class beside its key (`metric_name`)."""
    return re.sub(r"[^\w.\-]", "_", name, flags=re.ASCII)


def check_class_names(classes: Sequence[str]) -> None:
    """Classes whose metric keys would collide are refused (one line), before any training."""
    seen: dict[str, str] = {}
    for name in classes:
        key = metric_class_name(name)
        if key in seen:
            raise EvaluationError(f"classes {seen[key]!r} and {name!r} both become the metric name {key!r}; "
                                  "rename one of them")
        seen[key] = name


def prior_metrics(split: str, classes: Sequence[str], correction: Correction) -> dict[str, float]:
    """The priors a label-shift correction moved between, per class (and EM's iterations)."""
    out = {f"{split}_label_shift_em_iterations": float(correction.iterations),
           f"{split}_label_shift_em_converged": float(correction.converged)} if correction.method == "em" else {}
    for name, source, target in zip(classes, correction.source, correction.target, strict=True):
        out[f"{split}_prior_source_{metric_class_name(name)}"] = float(source)
        out[f"{split}_prior_target_{metric_class_name(name)}"] = float(target)
    return out


@dataclass
class EvaluationReport:
    classes: tuple[str, ...]
    metrics: dict[str, float]
    per_class: pd.DataFrame
    skipped: dict[str, str]  # classes without a defined AUC (no positive or no negative record)
    left_out: dict[str, str]  # classes with an AUC but too few records for the macro AUC (metrics.macro_classes)
    calibrators: dict[str, Calibrator]
    primary_calibration: str
    thresholds: np.ndarray
    figures: dict[str, go.Figure] = field(default_factory=dict)

    def summary(self, split: str = "test") -> str:
        k = self.metrics
        line = (f"{split} macro AUC {k[f'{split}_macro_auc']:.3f} "
                f"[{k[f'{split}_macro_auc_ci_low']:.3f}, {k[f'{split}_macro_auc_ci_high']:.3f}]"
                f"  ECE {k[f'{split}_ece']:.3f} -> {k[f'{split}_ece_{self.primary_calibration}']:.3f} "
                f"({self.primary_calibration})")
        if self.skipped:
            line += f"  skipped: {', '.join(f'{c} ({r})' for c, r in self.skipped.items())}"
        if self.left_out:
            line += (f"  left out of the macro ({len(self.left_out)} classes with fewer than {m.MIN_CLASS_SUPPORT} "
                     f"positive or negative records): {', '.join(self.left_out)}")
        return line


@dataclass(frozen=True)
class StoredCalibration:
    """A calibrator and F1 thresholds fitted earlier (on the model's own validation split), applied as they are."""

    calibrator: Calibrator
    thresholds: np.ndarray

    @classmethod
    def from_bundle(cls, calibrator: dict, thresholds: Sequence[float]) -> StoredCalibration:
        return cls(calibrator_from_dict(calibrator), np.asarray(thresholds, dtype=float))


def evaluate_predictions(y_val: np.ndarray | None, logits_val: np.ndarray | None, y_test: np.ndarray,
                         logits_test: np.ndarray, classes: Sequence[str], *, n_bootstrap: int = 1000, seed: int = 0,
                         primary_calibration: str = "temperature", challenge_weights: str | Path | None = None,
                         class_codes: Mapping[str, Sequence[str]] | None = None, split: str = "test",
                         with_figures: bool = True, stored: StoredCalibration | None = None,
                         correction: Correction | None = None) -> EvaluationReport:
    """Everything the platform reports about one model on one dataset (see the module docstring for keys).

    `y_*` [records, classes] in {0, 1}, `logits_*` [records, classes]. Calibrators and thresholds are fitted
    on (y_val, logits_val), or, with `stored` and no validation data, taken as stored. `correction`: a label
    shift applied to the test outputs after calibration (calibrators and thresholds stay those of val).
    """
    classes = tuple(classes)
    y_test, logits_test = m.validate(y_test, logits_test, "test logits")
    if y_val is None:
        if stored is None:
            raise m.EvaluationError("evaluation needs validation logits to fit calibration, or a stored calibration")
        primary_calibration = stored.calibrator.method
    else:
        y_val, logits_val = m.validate(y_val, logits_val, "validation logits")
        if y_val.shape[1] != len(classes):
            raise m.EvaluationError(f"{len(classes)} class names for {y_val.shape[1]} validation columns")
    if y_test.shape[1] != len(classes):
        raise m.EvaluationError(f"{len(classes)} class names for {y_test.shape[1]} test columns")
    offsets = np.zeros(len(classes)) if correction is None else correction.offsets
    uncorrected_logits, logits_test = logits_test, logits_test + offsets[None, :]
    make_calibrator(primary_calibration)  # fail early on an unknown name
    skipped = m.skipped_classes(y_test, classes)
    left_out = m.left_out_classes(y_test, classes)
    boot = m.bootstrap_auc(y_test, logits_test, n_resamples=n_bootstrap, seed=seed)
    probabilities = expit(logits_test)
    metrics: dict[str, float] = {
        f"{split}_macro_auc": boot.macro.estimate, f"{split}_macro_auc_ci_low": boot.macro.low,
        f"{split}_macro_auc_ci_high": boot.macro.high, f"{split}_macro_auc_all_classes": m.macro_auc(y_test, logits_test),
        f"{split}_micro_auc": m.micro_auc(y_test, logits_test),
        f"{split}_fmax": m.fmax(y_test, probabilities), f"{split}_n_records": float(len(y_test)),
        f"{split}_n_classes_evaluated": float(len(classes) - len(skipped)),
        f"{split}_n_classes_in_macro": float(boot.in_macro.sum()),
        f"{split}_bootstrap_resamples": float(boot.n_resamples),
    }
    if correction is not None:
        metrics.update(prior_metrics(split, classes, correction))
    for name, interval in zip(classes, boot.per_class, strict=True):
        if np.isfinite(interval.estimate):
            key = f"{split}_auc_{metric_class_name(name)}"
            metrics.update({key: interval.estimate, f"{key}_ci_low": interval.low, f"{key}_ci_high": interval.high})

    raw = calibration_summary(y_test, probabilities)
    metrics.update({f"{split}_ece": raw.ece, f"{split}_mce": raw.mce, f"{split}_brier": raw.brier,
                    f"{split}_ece_classwise": raw.classwise_ece})
    if y_val is None:
        calibrators = {primary_calibration: stored.calibrator}
    else:
        calibrators = {method: make_calibrator(method).fit(logits_val, y_val) for method in CALIBRATION_METHODS}
    calibrated: dict[str, np.ndarray] = {}
    for method, calibrator in calibrators.items():
        calibrated[method] = shift_probabilities(calibrator.predict_proba(uncorrected_logits), offsets)
        after = calibration_summary(y_test, calibrated[method])
        metrics.update({f"{split}_ece_{method}": after.ece, f"{split}_mce_{method}": after.mce,
                        f"{split}_brier_{method}": after.brier})

    thresholds = stored.thresholds if y_val is None else m.f1_thresholds(y_val, expit(logits_val))
    at_threshold = m.threshold_metrics(y_test, probabilities, thresholds)
    evaluated = np.array([name not in skipped for name in classes])
    for quantity in ("f1", "precision", "recall"):
        metrics[f"{split}_macro_{quantity}"] = float(at_threshold[quantity][evaluated].mean()) if evaluated.any() else float("nan")

    if challenge_weights is not None and class_codes:
        match = weights_for(classes, class_codes, load_weights(challenge_weights))
        if match.columns:
            predicted = probabilities >= thresholds[None, :]
            key = f"{split}_challenge_score" if match.complete else f"{split}_challenge_score_partial"
            metrics[key] = match.score(y_test, predicted)

    primary_probabilities = calibrated[primary_calibration]
    per_class = pd.DataFrame({
        "class": classes,
        "metric_name": [metric_class_name(name) for name in classes],
        "n_positive": y_test.sum(axis=0),
        "auc": [i.estimate for i in boot.per_class],
        "auc_ci_low": [i.low for i in boot.per_class],
        "auc_ci_high": [i.high for i in boot.per_class],
        "ece": raw.per_class_ece,
        f"ece_{primary_calibration}": calibration_summary(y_test, primary_probabilities).per_class_ece,
        "brier": raw.per_class_brier,
        "threshold": thresholds,
        "f1": at_threshold["f1"], "precision": at_threshold["precision"], "recall": at_threshold["recall"],
        "in_macro": boot.in_macro,
        "skipped": [skipped.get(name, left_out.get(name, "")) for name in classes],
    })
    figures = {}
    if with_figures:
        methods = {"uncalibrated": probabilities, primary_calibration: primary_probabilities}
        figures = {
            "reliability": reliability_figure(y_test, {"uncalibrated": probabilities, **calibrated}),
            "reliability_per_class": reliability_small_multiples(y_test, methods, classes),
            "roc": roc_figure(y_test, logits_test, classes, [i.estimate for i in boot.per_class]),
        }
    return EvaluationReport(classes, metrics, per_class, skipped, left_out, calibrators, primary_calibration, thresholds,
                            figures)
