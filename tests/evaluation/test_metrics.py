"""AUC, F-max, bootstrap CIs (vs scikit-learn, coverage, determinism), paired bootstrap, thresholds, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ecgtl.errors import EvaluationError
from ecgtl.evaluation import metrics as m


def _problem(n=600, classes=5, seed=0, separation=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, classes)) < np.linspace(0.4, 0.05, classes)).astype(int)
    return y, y * separation + rng.standard_normal(y.shape)


def test_auc_matches_scikit_learn_and_skips_undefined_classes():
    y, scores = _problem()
    y[:, 4] = 0  # no positives
    aucs = m.per_class_auc(y, scores)
    for j in range(4):
        assert aucs[j] == pytest.approx(roc_auc_score(y[:, j], scores[:, j]))
    assert np.isnan(aucs[4])
    assert m.skipped_classes(y, list("ABCDE")) == {"E": "no positive records"}
    assert m.macro_auc(y, scores) == pytest.approx(np.mean(aucs[:4]))
    assert m.micro_auc(y, scores) == pytest.approx(roc_auc_score(y.ravel(), scores.ravel()))


def test_weighted_auc_equals_auc_of_the_resampled_set_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.standard_normal(300) + y, 1)  # many ties
    weights, _ = m.usable_resample_weights(y[:, None], np.array([True]), 5, seed=3)
    fast = m.weighted_auc(y, scores, weights)
    for row in range(5):
        index = np.repeat(np.arange(300), weights[row])
        assert fast[row] == pytest.approx(roc_auc_score(y[index], scores[index]))


def test_bootstrap_is_deterministic_under_seed_and_brackets_the_estimate():
    y, scores = _problem()
    a, b = m.bootstrap_auc(y, scores, n_resamples=300, seed=7), m.bootstrap_auc(y, scores, n_resamples=300, seed=7)
    c = m.bootstrap_auc(y, scores, n_resamples=300, seed=8)
    assert a.macro == b.macro and a.macro != c.macro
    assert a.macro.low < a.macro.estimate < a.macro.high
    for interval in a.per_class:
        assert interval.low <= interval.estimate <= interval.high


def test_bootstrap_ci_covers_the_true_auc_about_95_percent():
    # Binormal model: positives N(d, 1), negatives N(0, 1) -> true AUC = Phi(d / sqrt(2)).
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(42)
    hits, trials = 0, 120
    for trial in range(trials):
        y = (rng.random((200, 1)) < 0.3).astype(int)
        scores = y * d + rng.standard_normal(y.shape)
        interval = m.bootstrap_auc(y, scores, n_resamples=300, seed=trial).macro
        hits += interval.low <= true_auc <= interval.high
    assert 0.88 <= hits / trials <= 0.99


def test_every_resample_averages_the_same_classes():
    """A class with one positive record: a third of plain resamples lack it. Those are redrawn, so each
    resampled macro AUC is a mean over the same classes as the estimate."""
    rng = np.random.default_rng(3)
    y = np.zeros((60, 3), dtype=int)
    y[:30, 0] = 1
    y[::3, 1] = 1
    y[7, 2] = 1  # a single positive
    scores = y + rng.standard_normal(y.shape)
    weights, note = m.usable_resample_weights(y, np.array([True, True, True]), 400, seed=0)
    assert len(weights) == 400 and note == ""
    assert (weights[:, 7] > 0).all()  # the lone positive is in every kept resample
    result = m.bootstrap_auc(y, scores, n_resamples=400, seed=0)
    assert result.n_resamples == 400 and np.isfinite(result.resampled_macro).all()
    per_class = np.stack([m.weighted_auc(y[:, j], scores[:, j], weights) for j in range(3)], axis=1)
    np.testing.assert_allclose(result.resampled_macro, per_class.mean(axis=1))


def test_bootstrap_says_when_resamples_cannot_hold_every_class():
    y = np.zeros((200, 2), dtype=int)
    y[:100, 0] = 1
    y[0, 1] = 1  # one positive in 200 records: only ~63% of resamples keep it ...
    y[1:199, 1] = 0
    scores = y + np.random.default_rng(0).standard_normal(y.shape)
    result = m.bootstrap_auc(y, scores, n_resamples=200, seed=0)
    assert result.n_resamples == 200  # ... which redrawing still fills
    _, note = m.usable_resample_weights(np.eye(60, 30, dtype=int), np.ones(30, dtype=bool), 50, seed=0)
    assert "only" in note  # 30 single-positive classes: almost no resample holds them all


def test_paired_bootstrap():
    y, better = _problem(seed=2, separation=1.5)
    rng = np.random.default_rng(5)
    worse = y * 0.5 + rng.standard_normal(y.shape)
    result = m.paired_bootstrap(y, better, worse, n_resamples=500, seed=0)
    assert result.observed > 0 and result.low > 0 and result.p_value < 0.01
    assert result.observed == pytest.approx(m.macro_auc(y, better) - m.macro_auc(y, worse))
    same = m.paired_bootstrap(y, better, better, n_resamples=200, seed=0)
    assert same.mean == 0 and same.p_value == 1.0
    reverse = m.paired_bootstrap(y, worse, better, n_resamples=500, seed=0)
    assert reverse.p_value > 0.99 and reverse.high < 0


def test_fmax_on_a_hand_computed_case():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    p = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.3]])
    # t in (0.3, 0.7]: predictions {0}, {1}, {0} -> precision 1, recall (1 + 1 + 0.5)/3 -> F = 0.909
    # t in (0.2, 0.3]: record 3 predicts both: precision 1, recall 1 -> F = 1
    assert m.fmax(y, p) == pytest.approx(1.0)
    p_bad = np.array([[0.9, 0.95], [0.1, 0.8], [0.7, 0.3]])
    assert m.fmax(y, p_bad) < 1.0


def test_f1_thresholds_and_threshold_metrics():
    y_val = np.array([[0], [0], [1], [1], [1]])
    p_val = np.array([[0.1], [0.45], [0.4], [0.8], [0.9]])
    thresholds = m.f1_thresholds(y_val, p_val)
    assert thresholds[0] == pytest.approx(0.4)  # F1 0.857 at 0.4 beats 0.8 at 0.8
    result = m.threshold_metrics(np.array([[1], [0], [1]]), np.array([[0.5], [0.6], [0.2]]), thresholds)
    assert result["precision"][0] == pytest.approx(0.5) and result["recall"][0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("y", "scores", "message"),
    [
        (np.ones((3, 2)), np.ones((3, 3)), "differ in shape"),
        (np.ones((0, 2)), np.ones((0, 2)), "empty evaluation set"),
        (np.array([[0, 1], [1, 0]]), np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN or infinite"),
        (np.array([[0, 1], [1, 0]]), np.array([[np.inf, 1.0], [0.0, 1.0]]), "NaN or infinite"),
        (np.array([[0, 2], [1, 0]]), np.zeros((2, 2)), "labels must be 0 or 1"),
        (np.ones(3), np.ones(3), "must be 2-D"),
    ],
)
def test_bad_input_is_a_clear_error(y, scores, message):
    with pytest.raises(EvaluationError, match=message):
        m.bootstrap_auc(y, scores, n_resamples=10)


def test_all_classes_undefined_is_an_error_not_a_number():
    with pytest.raises(EvaluationError, match="macro AUC is undefined"):
        m.macro_auc(np.zeros((4, 2)), np.zeros((4, 2)))


def test_bootstrap_over_seeds_widens_with_seed_spread_and_reduces_to_the_paired_bootstrap():
    rng = np.random.default_rng(11)
    y = (rng.random((300, 3)) < 0.3).astype(int)
    better = [y * 1.5 + rng.standard_normal(y.shape) for _ in range(3)]
    worse = [y * 0.8 + rng.standard_normal(y.shape) for _ in range(3)]
    summary = m.bootstrap_over_seeds([y] * 3, better, worse, n_resamples=300, seed=0)
    assert summary.n_seeds == 3 and summary.low < summary.estimate < summary.high and summary.low > 0
    assert summary.estimate == pytest.approx(np.mean([m.macro_auc(y, b) - m.macro_auc(y, w)
                                                      for b, w in zip(better, worse, strict=True)]))
    assert summary.p_value < 0.01
    one_seed = m.bootstrap_over_seeds([y], better[:1], worse[:1], n_resamples=300, seed=0)
    paired = m.paired_bootstrap(y, better[0], worse[0], n_resamples=300, seed=0)
    assert one_seed.estimate == pytest.approx(paired.observed)
    # Seeds that disagree widen the interval: the same records, but one seed's model is much worse.
    spread = m.bootstrap_over_seeds([y] * 3, [better[0], better[1], worse[2]], worse, n_resamples=300, seed=0)
    assert spread.high - spread.low > summary.high - summary.low
