"""PhysioNet/CinC 2020/2021 layout: `*.hea` + `*.mat` (key `val`) anywhere below a folder, SNOMED-CT `#Dx`.

Early releases wrote abbreviations instead of codes (the first 2020 CPSC release: `#Dx: RBBB`, `I-AVB`, `AF`);
they are mapped to SNOMED-CT through the challenges' own tables (`labels.snomed_dx`), and tokens that are
neither a known code nor an abbreviation are listed per record (`unknown_codes`) for `inspect` to report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.data.labels import snomed_dx
from ecgtl.data.record_source import RecordProblem, RecordSource
from ecgtl.data.records import lead_order, parse_header
from ecgtl.data.splits import persisted_split
from ecgtl.errors import DatasetError, RecordError
from ecgtl.files import find_files

# The 2020 Georgia release states 4880/mV; the 2021 release of the same records has identical digital
# values and 1000/mV, which is right. We read 4880 as 1000.
CINC_GAIN_ERRATA: dict[float, float] = {4880.0: 1000.0}

# Record-name prefixes of the challenge's sources (2021 training set).
ORIGIN_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("HR", "PTB-XL"), ("JS", "Chapman-Shaoxing/Ningbo"), ("E", "Georgia"), ("S", "PTB"), ("A", "CPSC"),
    ("Q", "CPSC-Extra"), ("I", "INCART"),
)
# Codes seen fewer times than this are not stratified on (they cannot be spread over three splits anyway).
_MIN_CODE_COUNT_FOR_STRATIFICATION = 3


def origin_of(record_name: str) -> str:
    for prefix, origin in ORIGIN_BY_PREFIX:
        if record_name.startswith(prefix):
            return origin
    return "other"


@dataclass
class CincSource(RecordSource):
    """All `.hea` records below `root`, searched recursively."""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: CinC folder does not exist")
        self.format_name = "CinC 2020/2021 (.hea + .mat, SNOMED-CT #Dx)"
        self.code_system = "snomed"
        self.gain_errata = CINC_GAIN_ERRATA
        self.problems = []
        self.header_paths = find_files(self.root, ".hea")
        if not self.header_paths:
            raise DatasetError(f"{self.root}: no .hea files found (is this a CinC challenge folder?)")
        rows = []
        seen: set[str] = set()
        for path in self.header_paths:
            try:
                header = parse_header(path)
                lead_order(header)
            except RecordError as exc:
                self.problems.append(RecordProblem(path.stem, str(path), str(exc)))
                continue
            if path.stem in seen:
                self.problems.append(RecordProblem(path.stem, str(path), f"{path}: duplicate record name"))
                continue
            seen.add(path.stem)
            codes, unknown = snomed_dx(header.dx_codes)
            rows.append((path.stem, str(path), header.age, header.sex, codes, unknown, origin_of(path.stem)))
        self.index = pd.DataFrame(rows, columns=["record_id", "header_path", "age", "sex", "codes", "unknown_codes",
                                                 "origin"])

    def splits(self, seed: int, split_dir: Path) -> np.ndarray:
        codes = sorted({c for record_codes in self.index["codes"] for c in record_codes})
        column = {c: j for j, c in enumerate(codes)}
        matrix = np.zeros((len(self.index), len(codes)), dtype=bool)
        for i, record_codes in enumerate(self.index["codes"]):
            matrix[i, [column[c] for c in record_codes]] = True
        matrix = matrix[:, matrix.sum(axis=0) >= _MIN_CODE_COUNT_FOR_STRATIFICATION]
        # Keyed by folder, not content: a later change to the records is then caught, not silently re-split.
        folder_key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        path = split_dir / f"cinc-{folder_key}-seed{seed}.csv"
        return persisted_split(path, list(self.index["record_id"]), matrix, seed)
