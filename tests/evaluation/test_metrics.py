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
    """Classes with enough records are in every kept resample (rare draws lacking one are redrawn), so each
    resampled macro AUC is a mean over the same classes as the estimate; a single-positive class is left out."""
    rng = np.random.default_rng(3)
    y = np.zeros((60, 3), dtype=int)
    y[:30, 0] = 1
    y[::12, 1] = 1  # 5 positives: just enough
    y[7, 2] = 1  # a single positive: its AUC is reported, not averaged
    scores = y + rng.standard_normal(y.shape)
    in_macro = m.macro_classes(y)
    assert in_macro.tolist() == [True, True, False]
    weights, note = m.usable_resample_weights(y, in_macro, 400, seed=0)
    assert len(weights) == 400 and note == ""
    assert ((weights @ y[:, 1]) > 0).all()  # the 5-positive class is in every kept resample
    result = m.bootstrap_auc(y, scores, n_resamples=400, seed=0)
    assert result.n_resamples == 400 and np.isfinite(result.resampled_macro).all()
    per_class = np.stack([m.weighted_auc(y[:, j], scores[:, j], weights) for j in range(2)], axis=1)
    np.testing.assert_allclose(result.resampled_macro, per_class.mean(axis=1))
    assert result.macro.estimate == pytest.approx(np.mean(m.per_class_auc(y, scores)[:2]))
    assert np.isfinite(result.per_class[2].estimate)  # still reported per class
    assert set(m.left_out_classes(y, list("ABC"))) == {"C"}


def test_macro_classes_fall_back_to_the_best_supported_classes():
    y = np.zeros((40, 4), dtype=int)
    y[:2, 0] = 1  # 2 positives
    y[5:8, 1] = 1  # 3 positives
    y[9, 2] = 1  # 1 positive
    assert m.macro_classes(y).tolist() == [False, True, False, False]  # none reaches 5: the best supported
    assert m.macro_classes(np.zeros((5, 2), dtype=int)).tolist() == [False, False]


def test_bootstrap_fills_up_with_plain_resamples_when_redrawing_cannot_hold_every_class():
    _, note = m.usable_resample_weights(np.eye(60, 30, dtype=int), np.ones(30, dtype=bool), 50, seed=0)
    assert "plain resamples" in note  # 30 single-positive classes: almost no resample holds them all
    y = np.eye(60, 30, dtype=int)
    result = m.bootstrap_auc(y, y + np.random.default_rng(0).standard_normal(y.shape), n_resamples=50, seed=0)
    assert result.n_resamples == 50 and np.isfinite([result.macro.low, result.macro.high]).all()


def _small_test_set(seed=0):
    """40 records, six classes: two common ones and four with one or two positives."""
    rng = np.random.default_rng(seed)
    y = np.zeros((40, 6), dtype=int)
    y[rng.choice(40, 12, replace=False), 0] = 1
    y[rng.choice(40, 8, replace=False), 1] = 1
    for j, count in zip(range(2, 6), (1, 2, 1, 2), strict=True):
        y[rng.choice(40, count, replace=False), j] = 1
    return y


def test_every_interval_is_finite_on_a_small_test_set_with_rare_classes():
    y = _small_test_set()
    rng = np.random.default_rng(1)
    better, worse = y * 2.0 + rng.standard_normal(y.shape), y * 0.3 + rng.standard_normal(y.shape)
    result = m.bootstrap_auc(y, better, n_resamples=300, seed=0)
    assert np.isfinite([result.macro.estimate, result.macro.low, result.macro.high]).all()
    assert result.in_macro.tolist() == [True, True, False, False, False, False] and result.note == ""
    paired = m.paired_bootstrap(y, better, worse, n_resamples=300, seed=0)
    assert np.isfinite([paired.observed, paired.low, paired.high]).all() and paired.n_resamples == 300
    assert paired.in_macro == (True, True, False, False, False, False)
    seeds = m.bootstrap_over_seeds([y, y, y], [better] * 3, [worse] * 3, n_resamples=300, seed=0)
    assert np.isfinite([seeds.estimate, seeds.low, seeds.high]).all()


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
