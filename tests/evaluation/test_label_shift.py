"""Label-shift correction: EM recovers known target priors, `prior` is Bayes' rule, AUC cannot move."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from ecgtl.evaluation.label_shift import (
    correction_for,
    em_priors,
    loss_weights,
    prior_offsets,
    shift_probabilities,
)
from ecgtl.evaluation.metrics import per_class_auc
from ecgtl.evaluation.report import evaluate_predictions

SEPARATION = 1.5  # class-conditional means at +-SEPARATION/2 with unit variance: a moderately good score


def posterior_under(prior: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The exact p(y=1 | x) for x ~ N(+-SEPARATION/2, 1) per class under `prior` [classes]."""
    return expit(SEPARATION * x + logit(prior)[None, :])


def sample(prior: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n, classes] drawn at `prior` and scores x with the fixed class-conditional densities."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(prior))) < prior[None, :]).astype(int)
    x = rng.standard_normal(y.shape) + SEPARATION * (y - 0.5)
    return y, x


SOURCE = np.array([0.05, 0.30, 0.50, 0.10])
TARGET = np.array([0.25, 0.05, 0.20, 0.10])  # rare -> common, common -> rare, and one class unchanged


def test_em_recovers_shifted_priors_from_unlabelled_outputs():
    """A calibrated source model applied to target records whose priors moved: EM's estimate is within 0.02
    of the true target priors (20 000 records), and far closer than the source priors it starts from."""
    _, x = sample(TARGET, 20_000, seed=1)
    found = em_priors(posterior_under(SOURCE, x), SOURCE)
    assert found.converged
    np.testing.assert_allclose(found.priors, TARGET, atol=0.02)
    assert np.abs(found.priors - TARGET).max() < 0.25 * np.abs(SOURCE - TARGET).max()
    # Without a shift, EM stays where it started (up to sampling noise).
    _, same = sample(SOURCE, 20_000, seed=2)
    np.testing.assert_allclose(em_priors(posterior_under(SOURCE, same), SOURCE).priors, SOURCE, atol=0.02)


def test_prior_shift_is_bayes_rule():
    """Moving the source posterior by the offsets gives the target posterior exactly."""
    x = np.linspace(-3, 3, 7)[:, None].repeat(4, axis=1)
    moved = shift_probabilities(posterior_under(SOURCE, x), prior_offsets(SOURCE, TARGET))
    np.testing.assert_allclose(moved, posterior_under(TARGET, x), rtol=1e-9)


def test_loss_weights_give_target_labels_the_source_priors():
    y, _ = sample(TARGET, 50_000, seed=3)
    positive, negative = loss_weights(SOURCE, TARGET)
    weights = y * positive + (1 - y) * negative
    effective = (weights * y).sum(axis=0) / weights.sum(axis=0)
    np.testing.assert_allclose(effective, SOURCE, atol=0.01)


def test_correction_leaves_auc_and_moves_calibration_and_f1():
    """Evaluated through the report: per-class AUC identical, ECE and Brier better after `prior` and `em`,
    F1 at the stored (source) thresholds changes."""
    y_val, x_val = sample(SOURCE, 4000, seed=4)
    y_test, x_test = sample(TARGET, 8000, seed=5)
    val_logits, test_logits = logit(posterior_under(SOURCE, x_val)), logit(posterior_under(SOURCE, x_test))
    classes = ["A", "B", "C", "D"]
    kwargs = dict(n_bootstrap=20, seed=0, with_figures=False)
    plain = evaluate_predictions(y_val, val_logits, y_test, test_logits, classes, **kwargs)
    prior = evaluate_predictions(y_val, val_logits, y_test, test_logits, classes, **kwargs,
                                 correction=correction_for("prior", SOURCE, target=y_test.mean(axis=0)))
    em = evaluate_predictions(y_val, val_logits, y_test, test_logits, classes, **kwargs,
                              correction=correction_for("em", SOURCE, probabilities=expit(test_logits)))
    for report in (prior, em):
        for name in classes:
            assert report.metrics[f"test_auc_{name}"] == pytest.approx(plain.metrics[f"test_auc_{name}"], abs=1e-12)
        assert report.metrics["test_ece"] < 0.5 * plain.metrics["test_ece"]
        assert report.metrics["test_brier"] < plain.metrics["test_brier"]
        assert report.metrics["test_macro_f1"] != plain.metrics["test_macro_f1"]
        assert report.metrics["test_prior_source_A"] == pytest.approx(SOURCE[0])
    assert em.metrics["test_prior_target_A"] == pytest.approx(TARGET[0], abs=0.03)
    assert em.metrics["test_label_shift_em_iterations"] >= 2
    np.testing.assert_allclose(per_class_auc(y_test, test_logits + prior_offsets(SOURCE, TARGET)),
                               per_class_auc(y_test, test_logits))


def test_em_warns_when_the_outputs_are_not_calibrated_on_the_target():
    """Outputs inflated on the target (a covariate shift, not a label shift) drive EM to the bounds: the
    correction says so; on calibrated outputs it says nothing."""
    _, x = sample(TARGET, 5000, seed=6)
    calibrated = correction_for("em", SOURCE, probabilities=posterior_under(SOURCE, x))
    assert calibrated.converged and calibrated.warning() is None
    inflated = correction_for("em", SOURCE, probabilities=expit(logit(posterior_under(SOURCE, x)) + 3.0))
    assert inflated.warning() is not None and "not calibrated" in inflated.warning()
    assert prior_offsets(SOURCE, inflated.target).max() > 3.0  # what it would do: a large, wrong move
