"""Calibration of multi-label outputs: ECE, MCE, Brier, and calibrators fitted on validation logits.

Definitions (each class is a binary problem; outputs are sigmoid probabilities of the positive class):
- per-class ECE: bins over the predicted probability (15 equal-width bins on [0, 1] by default, or equal-mass
  bins: quantiles of the predictions); ECE = sum_b (n_b / N) |mean(y in b) - mean(p in b)|. MCE is the largest
  |gap| over non-empty bins.
- pooled ECE (`test_ece`): the same over all (record, class) pairs together, i.e. the calibration of the
  marginal label probabilities ("classwise pooled" ECE). The class-wise mean of per-class ECE is reported too.
- Brier score: mean of (p - y)^2, per class and pooled.

Calibrators are fitted on validation logits and applied to test logits; each is a small JSON-serialisable
object (`to_dict` / `calibrator_from_dict`) that travels with a model:
- `platt`: per-class logistic regression on the logit (Platt 1999), via scikit-learn;
- `temperature`: one temperature T for all classes, p = sigmoid(z / T), by minimising validation log-loss
  (Guo et al. 2017); `temperature_per_class`: one T per class;
- `isotonic`: per-class isotonic regression of y on sigmoid(z), via scikit-learn (monotone, may tie scores).
Platt and temperature scaling are strictly monotone per class and so keep each class's AUC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from ecgtl.config import check_choice, choices
from ecgtl.errors import EvaluationError
from ecgtl.evaluation.metrics import validate

DEFAULT_BINS = 15


def bin_edges(probabilities: np.ndarray, n_bins: int = DEFAULT_BINS, strategy: str = "uniform") -> np.ndarray:
    if strategy == "uniform":
        return np.linspace(0, 1, n_bins + 1)
    if strategy == "quantile":
        edges = np.quantile(probabilities, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return np.unique(edges)
    raise EvaluationError(f"unknown binning strategy {strategy!r}; use 'uniform' or 'quantile'")


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean predicted probability and observed frequency (NaN for empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        return np.abs(self.observed - self.mean_predicted)

    @property
    def ece(self) -> float:
        filled = self.counts > 0
        return float(np.sum(self.counts[filled] * self.gaps[filled]) / self.counts.sum())

    @property
    def mce(self) -> float:
        filled = self.counts > 0
        return float(self.gaps[filled].max())


def reliability_bins(y: np.ndarray, probabilities: np.ndarray, n_bins: int = DEFAULT_BINS,
                     strategy: str = "uniform") -> ReliabilityBins:
    """Bin binary outcomes by predicted probability (right-closed bins; 0 falls in the first)."""
    y, probabilities = np.asarray(y, dtype=float).ravel(), np.asarray(probabilities, dtype=float).ravel()
    if len(y) == 0:
        raise EvaluationError("calibration needs at least one prediction")
    edges = bin_edges(probabilities, n_bins, strategy)
    which = np.clip(np.searchsorted(edges, probabilities, side="left") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(which, probabilities, minlength=len(edges) - 1) / counts
        observed = np.bincount(which, y, minlength=len(edges) - 1) / counts
    return ReliabilityBins(edges, counts, mean_predicted, observed)


@dataclass(frozen=True)
class CalibrationSummary:
    ece: float
    mce: float
    brier: float
    classwise_ece: float
    per_class_ece: np.ndarray
    per_class_brier: np.ndarray


def calibration_summary(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = DEFAULT_BINS,
                        strategy: str = "uniform") -> CalibrationSummary:
    """Pooled ECE/MCE/Brier plus per-class ECE and Brier (see the module docstring for definitions)."""
    y_true, probabilities = validate(y_true, probabilities, "probabilities")
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise EvaluationError("probabilities must lie in [0, 1]")
    pooled = reliability_bins(y_true, probabilities, n_bins, strategy)
    per_class = [reliability_bins(y_true[:, j], probabilities[:, j], n_bins, strategy).ece
                 for j in range(y_true.shape[1])]
    per_class_brier = ((probabilities - y_true) ** 2).mean(axis=0)
    return CalibrationSummary(pooled.ece, pooled.mce, float(((probabilities - y_true) ** 2).mean()),
                              float(np.mean(per_class)), np.array(per_class), per_class_brier)


# ----------------------------------------------------------------------------------------------- calibrators
@dataclass
class Calibrator:
    """Maps logits [records, classes] to calibrated probabilities. Fit on validation, apply to test."""

    method: str = ""

    def fit(self, logits: np.ndarray, y_true: np.ndarray) -> Calibrator:
        raise NotImplementedError

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError


@dataclass
class PlattScaling(Calibrator):
    method: str = "platt"
    slopes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercepts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, logits: np.ndarray, y_true: np.ndarray) -> PlattScaling:
        y_true, logits = validate(y_true, logits, "logits")
        self.slopes, self.intercepts = np.ones(logits.shape[1]), np.zeros(logits.shape[1])
        for j in range(logits.shape[1]):
            if 0 < y_true[:, j].sum() < len(y_true):  # otherwise keep the identity map
                model = LogisticRegression(C=1e4).fit(logits[:, [j]], y_true[:, j])
                self.slopes[j], self.intercepts[j] = model.coef_[0, 0], model.intercept_[0]
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return expit(np.asarray(logits) * self.slopes + self.intercepts)

    def to_dict(self) -> dict:
        return {"method": self.method, "slopes": self.slopes.tolist(), "intercepts": self.intercepts.tolist()}


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    def log_loss(log_t: float) -> float:
        p = np.clip(expit(logits / np.exp(log_t)), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    return float(np.exp(minimize_scalar(log_loss, bounds=(-5, 5), method="bounded").x))


@dataclass
class TemperatureScaling(Calibrator):
    method: str = "temperature"
    per_class: bool = False
    temperatures: np.ndarray = field(default_factory=lambda: np.ones(0))

    def fit(self, logits: np.ndarray, y_true: np.ndarray) -> TemperatureScaling:
        y_true, logits = validate(y_true, logits, "logits")
        if self.per_class:
            self.temperatures = np.array([_fit_temperature(logits[:, j], y_true[:, j]) for j in range(logits.shape[1])])
        else:
            self.temperatures = np.full(logits.shape[1], _fit_temperature(logits, y_true))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return expit(np.asarray(logits) / self.temperatures)

    def to_dict(self) -> dict:
        return {"method": self.method, "per_class": self.per_class, "temperatures": self.temperatures.tolist()}


@dataclass
class IsotonicCalibration(Calibrator):
    method: str = "isotonic"
    knots_x: list[np.ndarray] = field(default_factory=list)
    knots_y: list[np.ndarray] = field(default_factory=list)

    def fit(self, logits: np.ndarray, y_true: np.ndarray) -> IsotonicCalibration:
        y_true, logits = validate(y_true, logits, "logits")
        probabilities = expit(logits)
        self.knots_x, self.knots_y = [], []
        for j in range(logits.shape[1]):
            model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(probabilities[:, j], y_true[:, j])
            self.knots_x.append(np.asarray(model.X_thresholds_))
            self.knots_y.append(np.asarray(model.y_thresholds_))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        probabilities = expit(np.asarray(logits, dtype=float))
        return np.stack([np.interp(probabilities[:, j], x, y) for j, (x, y) in
                         enumerate(zip(self.knots_x, self.knots_y, strict=True))], axis=1)

    def to_dict(self) -> dict:
        return {"method": self.method, "knots_x": [x.tolist() for x in self.knots_x],
                "knots_y": [y.tolist() for y in self.knots_y]}


CalibrationMethod = Literal["platt", "temperature", "temperature_per_class", "isotonic"]
CALIBRATION_METHODS: tuple[str, ...] = choices(CalibrationMethod)


def make_calibrator(method: CalibrationMethod) -> Calibrator:
    check_choice("calibration method", method, CalibrationMethod, EvaluationError)
    if method == "platt":
        return PlattScaling()
    if method == "temperature":
        return TemperatureScaling()
    if method == "temperature_per_class":
        return TemperatureScaling(method="temperature_per_class", per_class=True)
    return IsotonicCalibration()


def calibrator_from_dict(data: dict) -> Calibrator:
    """Rebuild a fitted calibrator from `to_dict()` output."""
    method = data.get("method")
    calibrator = make_calibrator(method)
    if isinstance(calibrator, PlattScaling):
        calibrator.slopes, calibrator.intercepts = np.array(data["slopes"]), np.array(data["intercepts"])
    elif isinstance(calibrator, TemperatureScaling):
        calibrator.temperatures = np.array(data["temperatures"])
    else:
        calibrator.knots_x = [np.array(x) for x in data["knots_x"]]
        calibrator.knots_y = [np.array(y) for y in data["knots_y"]]
    return calibrator


def calibrated_probabilities(logits: np.ndarray, calibrator: Calibrator | None = None) -> np.ndarray:
    """Probabilities [records, classes] from `logits`: the calibrator's where a model stores one, else the plain
    sigmoid (a model trained without a validation split to fit one on)."""
    return calibrator.predict_proba(logits) if calibrator is not None else expit(logits)
