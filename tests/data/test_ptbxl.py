"""PTB-XL index: bad rows are record problems (one line, named), patients never cross folds."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_ptbxl

from ecgtl.data.cache import prepare
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.ptbxl import PtbxlSource
from ecgtl.errors import RecordError


def _edit_database(root, **changes_by_ecg_id):
    path = root / "ptbxl_database.csv"
    database = pd.read_csv(path)
    for column, changes in changes_by_ecg_id.items():
        for ecg_id, value in changes.items():
            database.loc[database["ecg_id"] == ecg_id, column] = value
    database.to_csv(path, index=False)


def test_empty_or_invalid_strat_fold_is_a_record_problem(tmp_path):
    root = write_ptbxl(tmp_path / "ptbxl", n=20)
    database = pd.read_csv(root / "ptbxl_database.csv").astype({"strat_fold": object})
    database.loc[database["ecg_id"] == 3, "strat_fold"] = None
    database.loc[database["ecg_id"] == 4, "strat_fold"] = "eleven"
    database.loc[database["ecg_id"] == 5, "strat_fold"] = 11
    database.to_csv(root / "ptbxl_database.csv", index=False)
    source = PtbxlSource(root)
    assert len(source.index) == 17
    reasons = {p.record_id: p.reason for p in source.problems}
    assert set(reasons) == {"3", "4", "5"} and all("is not a fold 1..10" in r for r in reasons.values())


def test_a_patient_in_two_folds_is_a_named_data_error_not_a_silent_split(tmp_path):
    root = write_ptbxl(tmp_path / "ptbxl", n=20)
    # Folds are ecg_id % 10 + 1: patient 2 gets ecg 12 (fold 3, like ecg 2) and ecg 19 (fold 10, the test fold).
    _edit_database(root, patient_id={12: 2.0, 19: 2.0})
    source = PtbxlSource(root)
    problems = [p for p in source.problems if "patient 2 has records in folds 3, 10" in p.reason]
    assert sorted(p.record_id for p in problems) == ["12", "19", "2"]
    assert not set(source.index["record_id"]) & {"2", "12", "19"}
    with pytest.raises(RecordError, match="patient 2 has records in folds 3, 10"):
        prepare(PrepareConfig(spec=f"ptbxl:{root}"), cache_dir=tmp_path / "cache", strict=True, progress=False)
    prepared = prepare(PrepareConfig(spec=f"ptbxl:{root}"), cache_dir=tmp_path / "cache", progress=False)
    assert sum(prepared.manifest["counts"].values()) == 17


def test_record_path_outside_the_dataset_folder_is_not_read(tmp_path):
    root = write_ptbxl(tmp_path / "ptbxl", n=10)
    outside = write_ptbxl(tmp_path / "other", n=10)
    _edit_database(root, filename_lr={4: f"../{outside.name}/records100/00000/00004_lr"})
    source = PtbxlSource(root)
    assert "4" not in set(source.index["record_id"])
    assert any(p.record_id == "4" and "lies outside the dataset folder" in p.reason for p in source.problems)


def test_a_folder_shipped_at_100_hz_is_read_from_its_100_hz_files_above_100_hz(tmp_path, monkeypatch, capsys):
    """A subset without records500/ (the shared real one is such) prepared at 250 Hz: the 100 Hz files, resampled,
    said once; a folder with 500 Hz files keeps reading those."""
    import shutil

    monkeypatch.setenv("ECGTL_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ptbxl(tmp_path / "ptbxl", n=20)
    shutil.rmtree(root / "records500", ignore_errors=True)
    prepared = prepare(PrepareConfig(spec=f"ptbxl:{root}", fs=250, label_set="ptbxl-superdiagnostic"), progress=False)
    assert sum(len(prepared.split(n)) for n in ("train", "val", "test")) == 20
    assert set(prepared.index["fs_original"]) == {100.0} and prepared.split("train").signals.shape[-1] == 2500
    assert "no 500 Hz files" in capsys.readouterr().err
