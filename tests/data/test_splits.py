"""Splits: PTB-XL folds, seeded multi-label stratification, persistence, nested fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgtl.data.splits import (
    fraction_indices,
    iterative_stratification,
    persisted_split,
    ptbxl_split_of_fold,
    stratified_split,
)
from ecgtl.errors import DatasetError


def _labels(n=2000, n_classes=18, seed=0):
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.3, 0.005, n_classes)
    return (rng.random((n, n_classes)) < prevalence).astype(np.uint8)


def test_ptbxl_folds():
    assert ptbxl_split_of_fold(np.arange(1, 11)).tolist() == ["train"] * 8 + ["val", "test"]
    with pytest.raises(DatasetError):
        ptbxl_split_of_fold(np.array([0]))


def test_stratification_keeps_label_proportions_and_sizes():
    labels = _labels()
    split = stratified_split(labels, seed=0)
    sizes = pd.Series(split).value_counts(normalize=True)
    assert sizes["train"] == pytest.approx(0.8, abs=0.01) and sizes["test"] == pytest.approx(0.1, abs=0.01)
    for name in ("train", "val", "test"):
        share = labels[split == name].sum(axis=0) / labels.sum(axis=0)
        expected = 0.8 if name == "train" else 0.1
        # Each class's positives are spread in proportion (to within one record of rounding).
        assert np.all(np.abs(share - expected) <= 1.0 / labels.sum(axis=0) + 0.011)
    # A plain random split does much worse on rare classes; stratification is doing the work.
    random_split = np.random.default_rng(0).choice(["train", "val", "test"], size=len(labels), p=[0.8, 0.1, 0.1])
    rare = labels[:, -1].astype(bool)
    assert abs((split[rare] == "test").mean() - 0.1) <= abs((random_split[rare] == "test").mean() - 0.1) + 1e-9


def test_stratification_is_deterministic_under_seed():
    labels = _labels(500)
    assert np.array_equal(iterative_stratification(labels, [0.8, 0.1, 0.1], 3),
                          iterative_stratification(labels, [0.8, 0.1, 0.1], 3))
    assert not np.array_equal(iterative_stratification(labels, [0.8, 0.1, 0.1], 3),
                              iterative_stratification(labels, [0.8, 0.1, 0.1], 4))


def test_persisted_split_is_reused_and_guards_against_changed_records(tmp_path):
    labels = _labels(200)
    ids = [f"E{i:05d}" for i in range(200)]
    path = tmp_path / "split.csv"
    first = persisted_split(path, ids, labels, seed=0)
    # Even a different seed does not change a split that is already on disk.
    again = persisted_split(path, list(reversed(ids)), labels[::-1], seed=1)
    assert np.array_equal(again, first[::-1])
    with pytest.raises(DatasetError, match="split.csv: the stored split lists other records"):
        persisted_split(path, ids[:-1], labels[:-1], seed=0)


def test_fractions_are_nested_and_stratified():
    labels = _labels(4000)
    small, large = fraction_indices(labels, 0.1, seed=0), fraction_indices(labels, 0.25, seed=0)
    assert len(small) == 400 and len(large) == 1000
    assert set(small) <= set(large)
    share = labels[small].sum(axis=0) / labels.sum(axis=0)
    common = labels.sum(axis=0) >= 100
    assert np.all(np.abs(share[common] - 0.1) < 0.03)
    assert np.array_equal(fraction_indices(labels, 1.0, seed=0), np.arange(4000))
    assert not np.array_equal(fraction_indices(labels, 0.1, seed=1), small)
    with pytest.raises(DatasetError, match="fraction must lie in"):
        fraction_indices(labels, 0.0, seed=0)
