"""ECE on hand-built cases, calibrators that keep AUC and lower ECE, serialisation, reliability figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from ecgtl.errors import EvaluationError
from ecgtl.evaluation.calibration import (
    CALIBRATION_METHODS,
    calibration_summary,
    calibrator_from_dict,
    make_calibrator,
    reliability_bins,
)
from ecgtl.evaluation.figures import reliability_figure, reliability_small_multiples
from ecgtl.evaluation.metrics import per_class_auc


def test_ece_of_a_perfectly_calibrated_set_is_zero():
    # In each bin the observed frequency equals the (single) predicted value.
    p = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 10)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (1, 3, 5, 7, 9)])
    assert reliability_bins(y, p).ece == pytest.approx(0.0)


def test_ece_over_and_under_confident_by_direct_computation():
    # Over-confident: predicts 0.9 where only 60% are positive, and 0.1 where 40% are.
    p = np.r_[np.full(10, 0.9), np.full(10, 0.1)]
    y = np.r_[np.ones(6), np.zeros(4), np.ones(4), np.zeros(6)]
    bins = reliability_bins(y, p)
    assert bins.ece == pytest.approx(0.5 * abs(0.6 - 0.9) + 0.5 * abs(0.4 - 0.1))
    assert bins.mce == pytest.approx(0.3)
    # Under-confident: predicts 0.6 where all are positive.
    under = reliability_bins(np.ones(8), np.full(8, 0.6))
    assert under.ece == pytest.approx(0.4)
    # Equal-mass bins give the same answer on this two-valued set.
    assert reliability_bins(y, p, strategy="quantile").ece == pytest.approx(bins.ece)


def test_pooled_and_per_class_summary():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    p = np.array([[0.9, 0.2], [0.9, 0.2], [0.1, 0.6], [0.1, 0.6]])
    summary = calibration_summary(y, p)
    assert summary.per_class_ece[0] == pytest.approx(0.1)
    assert summary.per_class_ece[1] == pytest.approx(0.5 * 0.2 + 0.5 * 0.4)
    assert summary.brier == pytest.approx(np.mean((p - y) ** 2))
    with pytest.raises(EvaluationError, match="must lie in"):
        calibration_summary(y, p * 2)


def _miscalibrated(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(-1.0, 1.5, size=(n, 3))
    y = (rng.random((n, 3)) < expit(true_logits)).astype(int)
    return y, 3.0 * true_logits + 1.0  # over-confident and shifted


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_calibrators_lower_ece_and_keep_auc(method):
    y_val, z_val = _miscalibrated(seed=1)
    y_test, z_test = _miscalibrated(seed=2)
    before = calibration_summary(y_test, expit(z_test)).ece
    calibrator = make_calibrator(method).fit(z_val, y_val)
    calibrated = calibrator.predict_proba(z_test)
    assert calibration_summary(y_test, calibrated).ece < before / 2
    if method == "isotonic":  # monotone but piecewise constant: ties can move AUC slightly
        np.testing.assert_allclose(per_class_auc(y_test, calibrated), per_class_auc(y_test, z_test), atol=0.01)
    else:
        np.testing.assert_allclose(per_class_auc(y_test, calibrated), per_class_auc(y_test, z_test), atol=1e-12)
    restored = calibrator_from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_allclose(restored.predict_proba(z_test), calibrated)


def test_temperature_recovers_a_known_temperature():
    y, z = _miscalibrated(n=20000)
    t = make_calibrator("temperature").fit(z - 1.0, y).temperatures[0]
    assert t == pytest.approx(3.0, rel=0.08)


def test_unknown_method():
    with pytest.raises(EvaluationError, match="calibration method must be one of platt, temperature, temperature_per_class, isotonic; got 'magic'"):
        make_calibrator("magic")


def test_reliability_figures_have_diagonal_gap_and_histogram():
    y, z = _miscalibrated(n=500)
    figure = reliability_figure(y, {"uncalibrated": expit(z), "temperature": expit(z / 3)})
    names = [trace.name for trace in figure.data]
    assert "perfect calibration" in names and any(n.startswith("gap") for n in names)
    assert sum(trace.type == "bar" for trace in figure.data) == 3  # gap + 2 histograms
    small = reliability_small_multiples(y, {"a": expit(z), "b": expit(z / 3)}, ["X", "Y", "Z"])
    assert len(small.layout.annotations) == 3
