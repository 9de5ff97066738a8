"""Conformance on real PTB-XL: the shared 1,819-record subset in PTB-XL's own layout (skipped when absent).

Every record reads as `wfdb.rdsamp` reads it, the splits are the official folds, and every label set counts
what a direct reading of `scp_codes` and `scp_statements.csv` counts.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgtl.data.labels import LABEL_SET_NAMES, SHARED18_MAP
from ecgtl.data.ptbxl import PtbxlSource
from ecgtl.data.records import parse_header, read_signal
from ecgtl.inputs import STANDARD_LEADS


@pytest.fixture(scope="module")
def real_ptbxl():
    from conftest import SHARED_SAMPLES

    root = SHARED_SAMPLES / "ptbxl-real-1819"
    if not (root / "ptbxl_database.csv").exists():
        pytest.skip(f"real PTB-XL subset not present at {root}")
    return root


@pytest.fixture(scope="module")
def source(real_ptbxl):
    return PtbxlSource(real_ptbxl)


def test_every_record_reads_equal_to_wfdb(source):
    assert len(source.index) == 1819 and not source.problems
    upper = [lead.upper() for lead in STANDARD_LEADS]
    for header_path in source.index["header_path"]:
        ours = read_signal(parse_header(header_path), root=source.root)
        signal, fields = wfdb.rdsamp(header_path.removesuffix(".hea"))
        order = [[name.upper() for name in fields["sig_name"]].index(lead) for lead in upper]
        assert ours.shape == (12, 1000) and fields["fs"] == 100
        np.testing.assert_allclose(ours, signal[:, order].T, rtol=0, atol=1e-6, err_msg=header_path)


def test_splits_are_the_official_folds(source, tmp_path):
    split = source.splits(seed=0, split_dir=tmp_path)
    folds = source.index["strat_fold"].to_numpy()
    assert {name: int((split == name).sum()) for name in ("train", "val", "test")} == {
        "train": 1442, "val": 183, "test": 194}
    assert set(folds[split == "train"]) == set(range(1, 9))
    assert set(folds[split == "val"]) == {9} and set(folds[split == "test"]) == {10}
    assert (source.splits(seed=7, split_dir=tmp_path) == split).all()  # the folds do not depend on the seed


def _direct_counts(real_ptbxl, name: str) -> dict[str, int]:
    """Per-class record counts read straight from the two CSV files (no ecgtl code involved)."""
    statements = pd.read_csv(real_ptbxl / "scp_statements.csv", index_col=0)
    database = pd.read_csv(real_ptbxl / "ptbxl_database.csv")
    records = [set(ast.literal_eval(text)) for text in database["scp_codes"]]
    flag = {column: set(statements.index[statements[column] == 1]) for column in ("diagnostic", "form", "rhythm")}
    if name == "shared18":
        groups = {cls: {codes[1]} for cls, codes in SHARED18_MAP.items()}
    elif name == "ptbxl-all":
        groups = {code: {code} for code in statements.index}
    elif name in ("ptbxl-diagnostic", "ptbxl-form", "ptbxl-rhythm"):
        groups = {code: {code} for code in flag[name.removeprefix("ptbxl-")]}
    else:
        column = {"ptbxl-subdiagnostic": "diagnostic_subclass", "ptbxl-superdiagnostic": "diagnostic_class"}[name]
        groups = {}
        for code in flag["diagnostic"]:
            groups.setdefault(statements.at[code, column], set()).add(code)
    return {cls: sum(bool(codes & record) for record in records) for cls, codes in groups.items()}


@pytest.mark.parametrize("name", [n for n in LABEL_SET_NAMES if n.startswith("ptbxl-")] + ["shared18"])
def test_every_label_set_counts_what_the_csv_files_say(source, real_ptbxl, name):
    labels, classes = source.label_matrix(name)
    expected = _direct_counts(real_ptbxl, name)
    assert sorted(classes) == sorted(expected)
    assert dict(zip(classes, labels.sum(axis=0).tolist(), strict=True)) == expected
    assert labels.shape == (1819, len(classes))
