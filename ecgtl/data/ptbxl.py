"""PTB-XL in its native PhysioNet layout: ptbxl_database.csv, scp_statements.csv, records100/, records500/."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.data.labels import LabelSet, get_label_set
from ecgtl.data.record_source import RecordProblem, RecordSource
from ecgtl.data.records import normalise_sex
from ecgtl.data.splits import ptbxl_split_of_fold
from ecgtl.errors import DatasetError

# PTB-XL writes the age of patients older than 89 as 300 (HIPAA); we store 90.
_PTBXL_CENSORED_AGE = 300


def find_database_csv(root: Path) -> Path:
    """`ptbxl_database.csv`, or the single `ptbxl_database*.csv` (excerpts such as `..._head64.csv`)."""
    exact = root / "ptbxl_database.csv"
    if exact.exists():
        return exact
    candidates = sorted(root.glob("ptbxl_database*.csv"))
    if len(candidates) != 1:
        raise DatasetError(f"{root}: expected one ptbxl_database.csv, found {len(candidates)}")
    return candidates[0]


def read_scp_statements(root: Path) -> pd.DataFrame:
    path = root / "scp_statements.csv"
    if not path.exists():
        raise DatasetError(f"{path}: scp_statements.csv is missing (is this a PTB-XL folder?)")
    return pd.read_csv(path, index_col=0)


def _parse_scp_codes(text: str, path: Path, ecg_id: object) -> tuple[str, ...]:
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise DatasetError(f"{path}: ecg_id {ecg_id}: cannot parse scp_codes {text!r}") from None
    return tuple(sorted(codes))


@dataclass
class PtbxlSource(RecordSource):
    """Native PTB-XL. `fs` picks the 100 Hz (`filename_lr`) or 500 Hz (`filename_hr`) files; above 100 Hz, a
    folder without any 500 Hz file (a subset shipped at 100 Hz) is read from its 100 Hz files, which the cache
    then resamples (said once on stderr; the cache's `fs_original` keeps 100)."""

    fs: float = 100

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: PTB-XL folder does not exist")
        self.format_name = "PTB-XL native (ptbxl_database.csv + WFDB records)"
        self.code_system = "scp"
        self.gain_errata = {}
        self.problems = []
        self.database_path = find_database_csv(self.root)
        self.statements = read_scp_statements(self.root)
        database = pd.read_csv(self.database_path)
        required = {"ecg_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr"}
        missing = required - set(database.columns)
        if missing:
            raise DatasetError(f"{self.database_path}: missing columns {', '.join(sorted(missing))}")
        column = "filename_lr" if self.fs <= 100 else "filename_hr"
        if column == "filename_hr" and not any((self.root / f"{name}.hea").exists()
                                               for name in database[column] if isinstance(name, str)):
            column = "filename_lr"
            print(f"{self.root}: no 500 Hz files ({database['filename_hr'].iloc[0] if len(database) else ''}.hea …); "
                  f"reading the 100 Hz files, resampled to {self.fs:g} Hz", file=sys.stderr)
        folds = pd.to_numeric(database["strat_fold"], errors="coerce")
        usable = np.ones(len(database), dtype=bool)
        resolved_root = self.root.resolve()
        header_paths = []
        for i, (ecg_id, name, fold) in enumerate(zip(database["ecg_id"], database[column], folds, strict=True)):
            path = self.root / f"{name}.hea"
            header_paths.append(path)
            problem = None
            if not (np.isfinite(fold) and fold == int(fold) and 1 <= fold <= 10):
                problem = f"{self.database_path}: ecg_id {ecg_id}: strat_fold {database['strat_fold'].iloc[i]!r} is not a fold 1..10"
            elif not isinstance(name, str) or not name or not path.resolve().is_relative_to(resolved_root):
                problem = f"{self.database_path}: ecg_id {ecg_id}: {column} {name!r} lies outside the dataset folder"
            elif not path.exists():
                problem = f"{path}: record file not found"
            if problem:
                usable[i] = False
                self.problems.append(RecordProblem(str(ecg_id), str(path), problem))
        usable &= self._patients_within_one_fold(database, folds, usable)
        present = database[usable].reset_index(drop=True)
        ages = pd.to_numeric(present.get("age"), errors="coerce")
        self.index = pd.DataFrame({
            "record_id": present["ecg_id"].astype(str),
            "header_path": [str(p) for p in np.array(header_paths, dtype=object)[usable]],
            "age": ages.where(ages < _PTBXL_CENSORED_AGE, 90.0),
            "sex": [normalise_sex(s) for s in present.get("sex", pd.Series([None] * len(present)))],
            "codes": [_parse_scp_codes(t, self.database_path, i) for t, i in zip(present["scp_codes"], present["ecg_id"], strict=True)],
            "unknown_codes": None,
            "patient_id": present.get("patient_id"),
            "strat_fold": folds[usable].astype(int).to_numpy(),
            "origin": "PTB-XL",
        })
        known = set(self.statements.index)
        self.index["unknown_codes"] = [tuple(c for c in codes if c not in known) for codes in self.index["codes"]]

    def _patients_within_one_fold(self, database: pd.DataFrame, folds: pd.Series, usable: np.ndarray) -> np.ndarray:
        """False for every record of a patient whose records sit in different folds (a data error: such a
        patient would cross train and test), each reported as a problem."""
        keep = np.ones(len(database), dtype=bool)
        if "patient_id" not in database:
            return keep
        frame = pd.DataFrame({"patient": database["patient_id"], "fold": folds})[usable & database["patient_id"].notna().to_numpy()]
        spread = frame.groupby("patient")["fold"].nunique()
        for patient in spread[spread > 1].index:
            members = np.flatnonzero((database["patient_id"] == patient).to_numpy() & usable)
            fold_list = ", ".join(str(int(f)) for f in sorted(folds.iloc[members].unique()))
            for i in members:
                keep[i] = False
                ecg_id = database["ecg_id"].iloc[i]
                self.problems.append(RecordProblem(
                    str(ecg_id), str(self.root), f"{self.database_path}: ecg_id {ecg_id}: patient {patient:g} has "
                    f"records in folds {fold_list}; all of them are left out rather than split across train and test"))
        return keep

    def label_set(self, name: str) -> LabelSet:
        return get_label_set(name, self.statements)

    def splits(self, seed: int, split_dir: Path) -> np.ndarray:
        # The official folds are patient-grouped and fixed; the seed does not apply.
        return ptbxl_split_of_fold(self.index["strat_fold"].to_numpy())
