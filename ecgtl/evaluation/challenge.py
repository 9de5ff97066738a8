"""The PhysioNet/CinC Challenge 2020/2021 scoring metric.

Reference: Perez Alday et al., "Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology
Challenge 2020", Physiol. Meas. 41 (2020) 124003, and the challenges' `evaluate_12ECG_score.py` (2020) and
`evaluate_model.py` (2021), whose formulas this follows (checked on fixture data, see the tests):

For each recording k with label set L_k and output set O_k, every pair (i in L_k, j in O_k) adds
1 / max(1, |L_k union O_k|) to a confusion matrix A; the score is sum(W * A) for the weights table W. It is
normalised so that the true labels score 1 and the "inactive" classifier, which always outputs only the
normal class (sinus rhythm, 426783006), scores 0:  (observed - inactive) / (correct - inactive); where the
true labels score no better than the inactive classifier the official scorers return 0.0, and so do we.

Equivalent codes are one scored class: the 2021 table writes them into one column (`733534002|164909002`),
the 2020 table has a column each, merged by `CHALLENGE_EQUIVALENCES`. A scored class is the set of all its
codes, and a model's class matches it when they share a code (so shared18's CLBBB, 164909002, is the 2021
class `733534002|164909002` as well as the 2020 class 164909002).

The score is the official challenge metric only when a model outputs every scored class of the table
(label sets `cinc2020`, `cinc2021`); over fewer classes it is a partial score (`WeightsMatch.complete`).

Neither final scorer changes labels or outputs before scoring: a record may be labelled (and output) normal
together with other classes, and a record with no output scores nothing (early 2020 versions had a
"normal-class rule" that did both; it was removed before the challenge closed, and ecgtl follows the final
versions). Where the true labels score no better than the inactive classifier, the final 2020 scorer returns
NaN and the 2021 one 0.0; a table's layout says which it is (`WeightsTable.vintage`), and we return the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.errors import EvaluationError
from ecgtl.files import read_text_file

NORMAL_CLASS = "426783006"
CHALLENGE_EQUIVALENCES: tuple[tuple[str, str], ...] = (
    ("713427006", "59118001"), ("284470004", "63593006"), ("427172004", "17338001"), ("733534002", "164909002"),
)


def modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The challenge's normalised multi-label confusion matrix [true class, output class]."""
    labels, outputs = np.asarray(labels, dtype=float), np.asarray(outputs, dtype=float)
    normalisation = np.maximum(((labels + outputs) > 0).sum(axis=1), 1)
    return labels.T @ (outputs / normalisation[:, None])


def challenge_score(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray, *,
                    normal_column: int | None, undefined: float = 0.0) -> float:
    """Normalised challenge score of binary `outputs` [records, classes] against `labels` [records, classes].

    `normal_column` is the column of the normal class; without one the inactive reference outputs nothing.
    `undefined` is returned where the correct labels score no better than the inactive reference (the final
    2021 scorer returns 0.0 there, the 2020 one NaN).
    """
    labels, outputs = np.asarray(labels).astype(bool), np.asarray(outputs).astype(bool)
    n_classes = labels.shape[1] if labels.ndim == 2 else -1
    if labels.shape != outputs.shape or weights.shape != (n_classes, n_classes):
        raise EvaluationError(f"challenge score: labels {labels.shape}, outputs {outputs.shape} and weights "
                              f"{weights.shape} do not match")
    inactive = np.zeros_like(labels)
    if normal_column is not None:
        inactive[:, normal_column] = True
    observed = np.nansum(weights * modified_confusion(labels, outputs))
    correct = np.nansum(weights * modified_confusion(labels, labels))
    baseline = np.nansum(weights * modified_confusion(labels, inactive))
    if correct == baseline:
        return undefined
    return float((observed - baseline) / (correct - baseline))


@dataclass(frozen=True)
class WeightsTable:
    """A challenge weights table: weights [classes, classes] and the codes of each scored class."""

    weights: np.ndarray
    classes: tuple[frozenset[str], ...]
    representatives: tuple[str, ...]  # the first code of each class, as the official scorer names it
    vintage: str = "2021"  # "2020": one column per code; "2021": equivalent codes in one 'a|b' column

    @property
    def undefined_score(self) -> float:
        """What the final scorer of this vintage returns when the correct labels score like the reference."""
        return float("nan") if self.vintage == "2020" else 0.0


def load_weights(path: str | Path, equivalences: Iterable[tuple[str, str]] = CHALLENGE_EQUIVALENCES) -> WeightsTable:
    """Read a challenge `weights.csv` (2020: one column per code; 2021: 'a|b' for equivalent codes)."""
    path = Path(path)
    text = read_text_file(path, "weights table")
    try:
        table = pd.read_csv(io.StringIO(text), index_col=0, dtype=str)
        values = table.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    except Exception as exc:  # pandas raises several types for malformed tables
        raise EvaluationError(f"{path}: not a weights table ({str(exc).splitlines()[0]})") from None
    if values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise EvaluationError(f"{path}: weights table is {values.shape[0]}x{values.shape[1]}, not square")
    column_codes = [[code.strip() for code in str(c).split("|")] for c in table.columns]
    partner = {}
    for first, second in equivalences:
        partner.setdefault(first, set()).add(second)
        partner.setdefault(second, set()).add(first)
    kept, classes, representatives = [], [], []
    for i, codes in enumerate(column_codes):
        group = set(codes).union(*(partner.get(code, set()) for code in codes))
        if any(group & existing for existing in classes):  # an equivalent column of a class already kept
            continue
        kept.append(i)
        classes.append(frozenset(group))
        representatives.append(codes[0])
    vintage = "2021" if any(len(codes) > 1 for codes in column_codes) else "2020"
    return WeightsTable(values[np.ix_(kept, kept)], tuple(classes), tuple(representatives), vintage=vintage)


@dataclass(frozen=True)
class WeightsMatch:
    """Which model classes the table scores: their columns, the sub-table, the normal class's position."""

    columns: list[int]
    weights: np.ndarray
    normal_column: int | None
    complete: bool  # every scored class of the table is among the model's classes: the official metric
    undefined: float = 0.0  # the table vintage's score where the labels score like the reference

    def score(self, labels: np.ndarray, outputs: np.ndarray) -> float:
        """The challenge score of a model's binary outputs [records, model classes] against its labels."""
        labels = np.asarray(labels)[:, self.columns].astype(bool)
        outputs = np.asarray(outputs)[:, self.columns].astype(bool)
        return challenge_score(labels, outputs, self.weights, normal_column=self.normal_column,
                               undefined=self.undefined)


def weights_for(classes: Sequence[str], class_codes: Mapping[str, Sequence[str]], table: WeightsTable) -> WeightsMatch:
    """Match model classes (with their SNOMED-CT codes) to the table's scored classes."""
    columns, rows = [], []
    for j, name in enumerate(classes):
        codes = set(class_codes.get(name, ()))
        row = next((i for i, group in enumerate(table.classes) if codes & group), None)
        if row is not None and row not in rows:
            columns.append(j)
            rows.append(row)
    normal_row = next((i for i, group in enumerate(table.classes) if NORMAL_CLASS in group), None)
    normal_column = rows.index(normal_row) if normal_row in rows else None
    return WeightsMatch(columns, table.weights[np.ix_(rows, rows)], normal_column,
                        complete=len(rows) == len(table.classes), undefined=table.undefined_score)
