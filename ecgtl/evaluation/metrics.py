"""Discrimination metrics for multi-label ECG classifiers, with bootstrap confidence intervals.

- AUC: scikit-learn's `roc_auc_score` per class; macro AUC averages the classes that have both positives and
  negatives in the evaluated set (the others are reported as skipped, with the reason); micro AUC pools all
  (record, class) pairs.
- F-max as in Strodthoff et al. 2020 (after the CAFA protein-function benchmark): for a threshold t,
  precision is averaged over records with at least one prediction >= t, recall over records with at least one
  true label; F-max is the best harmonic mean over t in 0, 0.01, ..., 1.
- Which classes a macro AUC averages (`macro_classes`), one rule for every macro AUC that comes with a CI
  (bootstrap CIs, paired differences, seed aggregation, the promotion gate): a class enters when the evaluated
  set holds at least `MIN_CLASS_SUPPORT` (5) positive and as many negative records. A class below that keeps
  its per-class AUC but is left out of the macro (the report names it and why): with one or two positives
  its AUC swings by tenths from one resample to the next, and a resample would often lack it altogether.
  If no class reaches the support, the classes with the largest support (at least one positive and one
  negative) are averaged, so a decision is made whenever any class is evaluable.
- Bootstrap: percentile intervals over resamples of records (seeded). Resamples are drawn as count weights
  and every AUC is computed from them with a weighted Mann-Whitney statistic (ties count one half),
  vectorised over resamples: 1 000 resamples of 2 000 x 18 take about a second.
  A resample in which a macro class has no positive (or no negative) record is redrawn
  (`usable_resample_weights`), so the interval is conditional on every macro class being present, as the
  point estimate is (as in Strodthoff et al.'s benchmark code). With the support rule that almost never
  happens; where it does more than `_MAX_DRAW_FACTOR` times over (only in the fallback to tiny classes), the
  remaining resamples are plain draws whose macro averages the macro classes they hold, and
  `BootstrapAUC.note` says so. Every interval is therefore finite whenever one class is evaluable.
- Paired bootstrap: two models scored on the same records, resampled together (the same redrawing); the
  report's difference is the observed one on all records, with the bootstrap CI and the one-sided p-value
  (the share of resamples in which model A is not better than model B).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ecgtl.errors import EvaluationError


def validate(y_true: np.ndarray, scores: np.ndarray, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Check a label matrix and a score matrix: same 2-D shape, non-empty, finite, labels in {0, 1}."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    if y_true.ndim != 2 or scores.ndim != 2:
        raise EvaluationError(f"labels and {what} must be 2-D [records, classes]; got {y_true.shape} and {scores.shape}")
    if y_true.shape != scores.shape:
        raise EvaluationError(f"labels {y_true.shape} and {what} {scores.shape} differ in shape")
    if y_true.shape[0] == 0 or y_true.shape[1] == 0:
        raise EvaluationError(f"empty evaluation set: {y_true.shape[0]} records, {y_true.shape[1]} classes")
    if not np.isfinite(scores).all():
        raise EvaluationError(f"{what} contain {int((~np.isfinite(scores)).sum())} NaN or infinite values")
    if not np.isin(y_true, (0, 1)).all():
        raise EvaluationError("labels must be 0 or 1; found " + ", ".join(map(str, np.unique(y_true[~np.isin(y_true, (0, 1))])[:5])))
    return y_true.astype(np.int8), scores


def skipped_classes(y_true: np.ndarray, classes: Sequence[str]) -> dict[str, str]:
    """Classes whose AUC is undefined in this set, with the reason."""
    positives = y_true.sum(axis=0)
    skipped = {}
    for name, count in zip(classes, positives, strict=True):
        if count == 0:
            skipped[name] = "no positive records"
        elif count == len(y_true):
            skipped[name] = "no negative records"
    return skipped


def per_class_auc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC per class (NaN where a class lacks positives or negatives)."""
    y_true, scores = validate(y_true, scores)
    result = np.full(y_true.shape[1], np.nan)
    for j in range(y_true.shape[1]):
        if 0 < y_true[:, j].sum() < len(y_true):
            result[j] = roc_auc_score(y_true[:, j], scores[:, j])
    return result


def macro_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Strodthoff's convention: the mean AUC of every class that has positive and negative records (the
    report's `*_macro_auc_all_classes`; the headline macro uses `macro_classes`). Public: for users comparing
    with published numbers. `y_true`, `scores` [records, classes]."""
    aucs = per_class_auc(y_true, scores)
    if np.isnan(aucs).all():
        raise EvaluationError("macro AUC is undefined: no class has both positive and negative records")
    return float(np.nanmean(aucs))


def micro_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    y_true, scores = validate(y_true, scores)
    if y_true.min() == y_true.max():
        raise EvaluationError("micro AUC is undefined: all labels are equal")
    return float(roc_auc_score(y_true.ravel(), scores.ravel()))


def fmax(y_true: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray | None = None) -> float:
    """Strodthoff et al.'s F-max (sample-centric precision/recall maximised over a threshold grid)."""
    y_true, probabilities = validate(y_true, probabilities, "probabilities")
    thresholds = np.linspace(0, 1, 101) if thresholds is None else thresholds
    has_true = y_true.sum(axis=1) > 0
    if not has_true.any():
        raise EvaluationError("F-max is undefined: no record has a positive label")
    best = 0.0
    for threshold in thresholds:
        predicted = probabilities >= threshold
        n_predicted = predicted.sum(axis=1)
        hits = (predicted & (y_true == 1)).sum(axis=1)
        with_prediction = n_predicted > 0
        if not with_prediction.any():
            continue
        precision = np.mean(hits[with_prediction] / n_predicted[with_prediction])
        recall = np.mean(hits[has_true] / y_true[has_true].sum(axis=1))
        if precision + recall > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    return float(best)


_MAX_DRAW_FACTOR = 20
MIN_CLASS_SUPPORT = 5


def class_support(y_true: np.ndarray) -> np.ndarray:
    """[classes] min(positives, negatives) of each class in the evaluated set."""
    positives = np.asarray(y_true).sum(axis=0)
    return np.minimum(positives, len(y_true) - positives)


def macro_classes(y_true: np.ndarray, *, min_support: int = MIN_CLASS_SUPPORT) -> np.ndarray:
    """[classes] bool: the classes a macro AUC with a CI averages (see the module docstring).

    `y_true` [records, classes] in {0, 1}. All False only when no class has a positive and a negative record.
    """
    support = class_support(y_true)
    chosen = support >= min_support
    if not chosen.any() and support.max(initial=0) >= 1:
        chosen = support == support.max()
    return chosen


def left_out_classes(y_true: np.ndarray, classes: Sequence[str], *, min_support: int = MIN_CLASS_SUPPORT
                     ) -> dict[str, str]:
    """Classes with a defined AUC that the macro AUC leaves out, each with the reason."""
    y_true = np.asarray(y_true)
    positives, support, chosen = y_true.sum(axis=0), class_support(y_true), macro_classes(y_true, min_support=min_support)
    return {name: (f"{int(positives[j])} positive and {len(y_true) - int(positives[j])} negative records: fewer than "
                   f"the {min_support} of each the macro AUC needs")
            for j, name in enumerate(classes) if support[j] >= 1 and not chosen[j]}


def usable_resample_weights(y_true: np.ndarray, in_macro: np.ndarray, n_resamples: int, seed: int
                            ) -> tuple[np.ndarray, str]:
    """[n_resamples, n] count weights of resamples in which every macro class has a positive and a negative.

    Drawn in batches from one seeded stream until `n_resamples` qualify or `_MAX_DRAW_FACTOR * n_resamples`
    were drawn; then the rest are plain resamples. Returns the weights and a note (empty unless plain
    resamples were needed).
    """
    rng = np.random.default_rng(seed)
    positives = y_true[:, in_macro].astype(bool)

    def draw(batch: int) -> np.ndarray:
        indices = rng.integers(0, len(y_true), size=(batch, len(y_true)))
        counts = np.zeros((batch, len(y_true)), dtype=np.int32)
        np.add.at(counts, (np.arange(batch)[:, None], indices), 1)
        return counts

    kept, drawn, n_kept = [], 0, 0
    while n_kept < n_resamples and drawn < _MAX_DRAW_FACTOR * n_resamples:
        batch = min(max(n_resamples, 64), _MAX_DRAW_FACTOR * n_resamples - drawn)
        counts = draw(batch)
        drawn += batch
        qualified = counts[(((counts @ positives) > 0) & ((counts @ ~positives) > 0)).all(axis=1)]
        kept.append(qualified)
        n_kept += len(qualified)
    note = ""
    if n_kept < n_resamples:
        note = (f"only {n_kept} of {drawn} resamples held a positive and a negative record of every macro class; "
                f"{n_resamples - n_kept} plain resamples average the macro classes they hold")
        kept.append(draw(n_resamples - n_kept))
    return np.concatenate(kept)[:n_resamples], note


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of one class under each row of `weights` [resamples, n] (Mann-Whitney with ties as 1/2).

    NaN where a resample holds no positive or no negative record.
    """
    order = np.argsort(scores, kind="mergesort")
    sorted_scores, positive = scores[order], y_true[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order].astype(float)
    pos_per_group = np.add.reduceat(w * positive, starts, axis=1)
    neg_per_group = np.add.reduceat(w * ~positive, starts, axis=1)
    neg_below = np.cumsum(neg_per_group, axis=1) - neg_per_group
    numerator = (pos_per_group * (neg_below + 0.5 * neg_per_group)).sum(axis=1)
    denominator = pos_per_group.sum(axis=1) * neg_per_group.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass
class BootstrapAUC:
    """Point estimates and percentile CIs of per-class and macro AUC."""

    per_class: list[Interval]
    macro: Interval
    n_resamples: int
    confidence: float
    resampled_macro: np.ndarray
    note: str = ""
    in_macro: np.ndarray | None = None  # [classes] bool: the classes the macro averages

    def __post_init__(self) -> None:
        self.resampled_macro = np.asarray(self.resampled_macro)


def _percentile_interval(estimate: float, samples: np.ndarray, confidence: float) -> Interval:
    samples = samples[np.isfinite(samples)]
    if not len(samples) or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high))


def _resampled_aucs(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray, evaluable: np.ndarray) -> np.ndarray:
    resampled = np.full((weights.shape[0], y_true.shape[1]), np.nan)
    for j in np.flatnonzero(evaluable):
        resampled[:, j] = weighted_auc(y_true[:, j], scores[:, j], weights)
    return resampled


def _macro(aucs: np.ndarray, in_macro: np.ndarray) -> np.ndarray:
    """Mean over the macro classes that each row holds (NaN only where it holds none)."""
    chosen = aucs[..., in_macro]
    held = np.isfinite(chosen)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(held, chosen, 0).sum(axis=-1) / held.sum(axis=-1)


def _macro_or_error(y_true: np.ndarray) -> np.ndarray:
    in_macro = macro_classes(y_true)
    if not in_macro.any():
        raise EvaluationError("macro AUC is undefined: no class has both positive and negative records")
    return in_macro


def bootstrap_auc(y_true: np.ndarray, scores: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> BootstrapAUC:
    """Per-class and macro AUC with seeded percentile bootstrap intervals (the macro over `macro_classes`).

    `y_true` [records, classes] in {0, 1}; `scores` [records, classes], any monotone score (logits).
    """
    if n_resamples < 1:
        raise EvaluationError(f"n_resamples must be positive, got {n_resamples}")
    y_true, scores = validate(y_true, scores)
    point = per_class_auc(y_true, scores)
    in_macro = _macro_or_error(y_true)
    weights, note = usable_resample_weights(y_true, in_macro, n_resamples, seed)
    resampled = _resampled_aucs(y_true, scores, weights, np.isfinite(point))
    macro_samples = _macro(resampled, in_macro)
    per_class = [_percentile_interval(point[j], resampled[:, j], confidence) for j in range(y_true.shape[1])]
    macro = _percentile_interval(float(np.mean(point[in_macro])), macro_samples, confidence)
    return BootstrapAUC(per_class, macro, len(weights), confidence, macro_samples, note, in_macro)


@dataclass(frozen=True)
class PairedDifference:
    """Macro AUC of A minus B on the same records: mean over resamples, CI, one-sided p (H0: A <= B)."""

    observed: float
    mean: float
    low: float
    high: float
    p_value: float
    n_resamples: int
    in_macro: tuple[bool, ...] = ()  # per class: whether the macro AUC averaged it


def paired_bootstrap(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, *, n_resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> PairedDifference:
    """Paired bootstrap of the macro-AUC difference between two models scored on the same records.

    `observed` is the difference on all records (what to report); `mean` the mean over resamples.
    """
    y_true, scores_a = validate(y_true, scores_a, "scores of model A")
    _, scores_b = validate(y_true, scores_b, "scores of model B")
    point_a, point_b = per_class_auc(y_true, scores_a), per_class_auc(y_true, scores_b)
    in_macro = _macro_or_error(y_true)
    weights, _ = usable_resample_weights(y_true, in_macro, n_resamples, seed)
    macro_a = _macro(_resampled_aucs(y_true, scores_a, weights, in_macro), in_macro)
    macro_b = _macro(_resampled_aucs(y_true, scores_b, weights, in_macro), in_macro)
    difference = (macro_a - macro_b)[np.isfinite(macro_a)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(difference, [alpha, 1 - alpha])
    return PairedDifference(
        observed=float(np.mean(point_a[in_macro]) - np.mean(point_b[in_macro])),
        mean=float(difference.mean()), low=float(low), high=float(high),
        p_value=float((np.sum(difference <= 0) + 1) / (len(difference) + 1)), n_resamples=len(difference),
        in_macro=tuple(bool(x) for x in in_macro),
    )


def f1_thresholds(y_val: np.ndarray, probabilities_val: np.ndarray) -> np.ndarray:
    """Per-class threshold maximising F1 on validation (0.5 where a class has no positives there)."""
    y_val, probabilities_val = validate(y_val, probabilities_val, "probabilities")
    thresholds = np.full(y_val.shape[1], 0.5)
    for j in range(y_val.shape[1]):
        if y_val[:, j].sum() == 0:
            continue
        precision, recall, candidates = precision_recall_curve(y_val[:, j], probabilities_val[:, j])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
        thresholds[j] = candidates[int(np.argmax(f1[:-1]))]
    return thresholds


def threshold_metrics(y_true: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """F1, precision and recall per class at fixed thresholds (0 where undefined)."""
    y_true, probabilities = validate(y_true, probabilities, "probabilities")
    predicted = probabilities >= np.asarray(thresholds)[None, :]
    tp = (predicted & (y_true == 1)).sum(axis=0)
    fp = (predicted & (y_true == 0)).sum(axis=0)
    fn = (~predicted & (y_true == 1)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"f1": f1, "precision": precision, "recall": recall}


@dataclass(frozen=True)
class SeedSummary:
    """A quantity averaged over seeds with a CI that resamples seeds and, within each, test records."""

    estimate: float
    low: float
    high: float
    p_value: float  # one-sided, H0: quantity <= 0 (meaningful for differences)
    n_seeds: int
    seed_values: tuple[float, ...]


def _resampled_macro_differences(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray | None,
                                 n_resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """Observed macro AUC of A (minus B) and its values over record resamples (same classes throughout)."""
    y_true, scores_a = validate(y_true, scores_a, "scores of model A")
    in_macro = _macro_or_error(y_true)
    weights, _ = usable_resample_weights(y_true, in_macro, n_resamples, seed)
    observed = float(np.mean(per_class_auc(y_true, scores_a)[in_macro]))
    resampled = _macro(_resampled_aucs(y_true, scores_a, weights, in_macro), in_macro)
    if scores_b is not None:
        _, scores_b = validate(y_true, scores_b, "scores of model B")
        observed -= float(np.mean(per_class_auc(y_true, scores_b)[in_macro]))
        resampled = resampled - _macro(_resampled_aucs(y_true, scores_b, weights, in_macro), in_macro)
    return observed, resampled[np.isfinite(resampled)]


def bootstrap_over_seeds(y_true: list[np.ndarray], scores_a: list[np.ndarray],
                         scores_b: list[np.ndarray] | None = None, *, n_resamples: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> SeedSummary:
    """Mean over seeds of macro AUC (of A, or of A minus B paired on the same records), with a two-level
    bootstrap CI: each replicate draws seeds with replacement and, for each drawn seed, a resample of its test
    records (A and B resampled together). With one seed this is the paired record bootstrap.

    `y_true[s]` [records, classes], `scores_*[s]` [records, classes] for seed s.
    """
    if not y_true or len(y_true) != len(scores_a) or (scores_b is not None and len(scores_b) != len(y_true)):
        raise EvaluationError("bootstrap over seeds: one label and score matrix per seed, at least one seed")
    observed, resampled = [], []
    for s, (y, a) in enumerate(zip(y_true, scores_a, strict=True)):
        value, values = _resampled_macro_differences(y, a, None if scores_b is None else scores_b[s], n_resamples,
                                                     seed * 1000 + s)
        observed.append(value)
        resampled.append(values)
    n = min(len(r) for r in resampled)
    if n == 0:
        raise EvaluationError("bootstrap over seeds: the test sets are too small for a CI")
    matrix = np.stack([r[:n] for r in resampled])  # [seeds, replicates]
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(observed), size=(n, len(observed)))  # seeds drawn per replicate
    replicates = matrix[drawn, np.arange(n)[:, None]].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return SeedSummary(float(np.mean(observed)), float(low), float(high),
                       float((np.sum(replicates <= 0) + 1) / (len(replicates) + 1)), len(observed), tuple(observed))
