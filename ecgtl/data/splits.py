"""Train/val/test splits and nested training fractions.

PTB-XL ships `strat_fold` (patients never cross folds): folds 1-8 train, 9 val, 10 test, as in Strodthoff et al.
CinC data has no official split, so we make a seeded multi-label stratified one with iterative stratification
(Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011) and persist it as CSV so that it never changes silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_PROPORTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def ptbxl_split_of_fold(strat_fold: np.ndarray) -> np.ndarray:
    """'train' for folds 1-8, 'val' for fold 9, 'test' for fold 10."""
    folds = np.asarray(strat_fold).astype(int)
    if ((folds < 1) | (folds > 10)).any():
        raise DatasetError("strat_fold must lie in 1..10")
    return np.where(folds == 10, "test", np.where(folds == 9, "val", "train"))


def iterative_stratification(labels: np.ndarray, proportions: Sequence[float], seed: int) -> np.ndarray:
    """Assign each row of a multi-hot matrix to one of len(proportions) folds (Sechidis et al. 2011).

    Rarest labels are distributed first, each sample going to the fold that most lacks that label; rows
    without labels fill folds by their remaining size. Returns fold indices (int) of length n.
    """
    labels = np.asarray(labels, dtype=bool)
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    props = np.asarray(proportions, dtype=float)
    props = props / props.sum()
    wanted_rows = props * n
    wanted_labels = props[:, None] * labels.sum(axis=0)[None, :]
    fold = np.full(n, -1, dtype=int)
    remaining = np.ones(n, dtype=bool)

    def place(row: int, label: int | None) -> None:
        scores = wanted_rows if label is None else wanted_labels[:, label]
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:
            rows_left = wanted_rows[best]
            best = best[rows_left == rows_left.max()]
        chosen = int(rng.choice(best)) if len(best) > 1 else int(best[0])
        fold[row] = chosen
        remaining[row] = False
        wanted_rows[chosen] -= 1
        wanted_labels[chosen] -= labels[row]

    while remaining.any():
        counts = labels[remaining].sum(axis=0)
        if counts.sum() == 0:
            for row in rng.permutation(np.flatnonzero(remaining)):
                place(int(row), None)
            break
        present = np.flatnonzero(counts > 0)
        rarest = present[counts[present] == counts[present].min()]
        label = int(rng.choice(rarest))
        for row in rng.permutation(np.flatnonzero(remaining & labels[:, label])):
            place(int(row), label)
    return fold


def stratified_split(labels: np.ndarray, seed: int, proportions: Sequence[float] = DEFAULT_PROPORTIONS) -> np.ndarray:
    """'train'/'val'/'test' per row, multi-label stratified."""
    return np.array(SPLITS)[iterative_stratification(labels, proportions, seed)]


def persisted_split(path: Path, record_ids: Sequence[str], labels: np.ndarray, seed: int,
                    proportions: Sequence[float] = DEFAULT_PROPORTIONS) -> np.ndarray:
    """The stratified split stored at `path`, made (and written atomically) on first use.

    A stored split whose records differ from `record_ids` is an error rather than a silent re-split.
    """
    ids = [str(r) for r in record_ids]
    if path.exists():
        stored = pd.read_csv(path, dtype=str)
        if sorted(stored["record_id"]) != sorted(ids):
            raise DatasetError(
                f"{path}: the stored split lists other records than the dataset has now; "
                "delete the file to make a new split"
            )
        return stored.set_index("record_id").loc[ids, "split"].to_numpy()
    split = stratified_split(labels, seed, proportions)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: parallel workers write the same file
    pd.DataFrame({"record_id": ids, "split": split}).to_csv(tmp, index=False)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"seed": seed, "proportions": list(proportions)}))
    return split


def nested_fraction_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded ordering of rows whose every prefix is label-stratified.

    Rows are dealt into up to 100 stratified chunks that are then concatenated, so taking the first
    `round(f * n)` rows gives nested subsets (the 10% subset lies inside the 25% subset).
    """
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=int)
    n_chunks = int(np.clip(n // 10, 1, 100))
    chunk = iterative_stratification(labels, np.ones(n_chunks), seed)
    rng = np.random.default_rng(seed + 1)
    tie_break = rng.random(n)
    return np.lexsort((tie_break, chunk))


def fraction_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of the seeded, stratified, nested `fraction` subset (at least one row)."""
    if not 0 < fraction <= 1:
        raise DatasetError(f"fraction must lie in (0, 1], got {fraction}")
    n = len(labels)
    if fraction == 1:
        return np.arange(n)
    take = max(1, int(round(fraction * n)))
    return np.sort(nested_fraction_order(labels, seed)[:take])
