"""PTB-XL in its native PhysioNet layout: ptbxl_database.csv, scp_statements.csv, records100/, records500/."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.data.labels import LabelSet, get_label_set
from ecgtl.data.records import normalise_sex
from ecgtl.data.sources import RecordProblem, RecordSource
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
    """Native PTB-XL. `fs` picks the 100 Hz (`filename_lr`) or 500 Hz (`filename_hr`) files."""

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
        header_paths = [self.root / f"{name}.hea" for name in database[column]]
        exists = np.array([path.exists() for path in header_paths])
        for ecg_id, path in zip(database["ecg_id"][~exists], np.array(header_paths, dtype=object)[~exists],
                                strict=True):
            self.problems.append(RecordProblem(str(ecg_id), str(path), f"{path}: record file not found"))
        present = database[exists].reset_index(drop=True)
        ages = pd.to_numeric(present.get("age"), errors="coerce")
        self.index = pd.DataFrame({
            "record_id": present["ecg_id"].astype(str),
            "header_path": [str(p) for p in np.array(header_paths, dtype=object)[exists]],
            "age": ages.where(ages < _PTBXL_CENSORED_AGE, 90.0),
            "sex": [normalise_sex(s) for s in present.get("sex", pd.Series([None] * len(present)))],
            "codes": [_parse_scp_codes(t, self.database_path, i) for t, i in zip(present["scp_codes"], present["ecg_id"], strict=True)],
            "patient_id": present.get("patient_id"),
            "strat_fold": present["strat_fold"].astype(int),
            "origin": "PTB-XL",
        })

    def label_set(self, name: str) -> LabelSet:
        return get_label_set(name, self.statements)

    def splits(self, seed: int, split_dir: Path) -> np.ndarray:
        # The official folds are patient-grouped and fixed; the seed does not apply.
        return ptbxl_split_of_fold(self.index["strat_fold"].to_numpy())
