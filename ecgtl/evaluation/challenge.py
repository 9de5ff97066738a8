"""The PhysioNet/CinC Challenge 2020 scoring metric.

Reference: Perez Alday et al., "Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology
Challenge 2020", Physiol. Meas. 41 (2020) 124003, and the challenge's `evaluate_12ECG_score.py`.

For each recording k with label set L_k and output set O_k, every pair (i in L_k, j in O_k) adds
1 / max(1, |L_k union O_k|) to a confusion matrix A; the score is sum(W * A) for the weights table W. It is
normalised so that the true labels score 1 and the "inactive" classifier, which always outputs only the
normal class (sinus rhythm, 426783006), scores 0:  (observed - inactive) / (correct - inactive).
Equivalent codes (e.g. 713427006 | 59118001) are one class: the first code of a pair stands for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.errors import EvaluationError

NORMAL_CLASS = "426783006"
CHALLENGE_EQUIVALENCES: tuple[tuple[str, str], ...] = (
    ("713427006", "59118001"), ("284470004", "63593006"), ("427172004", "17338001"), ("164909002", "733534002"),
)


def modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The challenge's normalised multi-label confusion matrix [true class, output class]."""
    labels, outputs = np.asarray(labels, dtype=float), np.asarray(outputs, dtype=float)
    normalisation = np.maximum(((labels + outputs) > 0).sum(axis=1), 1)
    return labels.T @ (outputs / normalisation[:, None])


def challenge_score(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray, classes: Sequence[str],
                    normal_class: str = NORMAL_CLASS) -> float:
    """Normalised challenge score of binary `outputs` against `labels` ([records, classes], columns = classes).

    When `normal_class` is not among `classes`, the inactive reference outputs nothing.
    """
    labels, outputs = np.asarray(labels).astype(bool), np.asarray(outputs).astype(bool)
    if labels.shape != outputs.shape or labels.shape[1] != len(classes) or weights.shape != (len(classes),) * 2:
        raise EvaluationError(f"challenge score: labels {labels.shape}, outputs {outputs.shape}, weights "
                              f"{weights.shape} and {len(classes)} classes do not match")
    inactive = np.zeros_like(labels)
    if normal_class in classes:
        inactive[:, list(classes).index(normal_class)] = True
    observed = np.nansum(weights * modified_confusion(labels, outputs))
    correct = np.nansum(weights * modified_confusion(labels, labels))
    baseline = np.nansum(weights * modified_confusion(labels, inactive))
    if correct == baseline:
        return float("nan")
    return float((observed - baseline) / (correct - baseline))


def load_weights(path: str | Path, equivalences: Iterable[tuple[str, str]] = CHALLENGE_EQUIVALENCES
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
    """A challenge `weights.csv` (2020: one column per code; 2021: 'a|b' for equivalent codes).

    Returns the weights and the canonical code of each class; the second code of an equivalent pair is merged
    into the first.
    """
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path}: weights table not found")
    table = pd.read_csv(path, index_col=0, dtype=str)
    codes = [str(c).split("|")[0].strip() for c in table.columns]
    values = table.to_numpy(dtype=float)
    duplicate = {second for first, second in equivalences if first in codes and second in codes}
    keep = [i for i, code in enumerate(codes) if code not in duplicate]
    return values[np.ix_(keep, keep)], tuple(codes[i] for i in keep)


def weights_for(classes: Sequence[str], class_codes: dict[str, str], weights: np.ndarray,
                weight_codes: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """The sub-table of `weights` for those of `classes` that the challenge scores, and their columns."""
    position = {code: i for i, code in enumerate(weight_codes)}
    columns = [j for j, name in enumerate(classes) if class_codes.get(name) in position]
    rows = [position[class_codes[classes[j]]] for j in columns]
    return weights[np.ix_(rows, rows)], columns
