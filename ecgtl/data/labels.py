"""Label sets: the one registry that turns SNOMED-CT (CinC) or SCP-ECG (PTB-XL) codes into multi-hot matrices.

The shared 18-label map is data (`SHARED18_MAP`), checked in tests against the per-source counts that the
PhysioNet/CinC challenge publishes in `dx_mapping_scored.csv` / `dx_mapping_unscored.csv`.
PTB-XL label sets follow Strodthoff et al. 2020 (IEEE JBHI, "Deep learning for ECG analysis: benchmarks and
insights from PTB-XL"): every SCP key of a record counts, whatever its likelihood, and diagnostic statements
are aggregated to their subclass / class from `scp_statements.csv`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from ecgtl.errors import DatasetError

# class -> (SNOMED-CT code, PTB-XL SCP code). Order is the canonical class order of `shared18`.
SHARED18_MAP: dict[str, tuple[str, str]] = {
    "1AVB": ("270492004", "1AVB"),
    "CRBBB": ("713427006", "CRBBB"),
    "IRBBB": ("713426002", "IRBBB"),
    "LAFB": ("445118002", "LAFB"),
    "CLBBB": ("164909002", "CLBBB"),
    "IVCD": ("698252002", "IVCD"),
    "LNGQT": ("111975006", "LNGQT"),
    "2AVB": ("195042002", "2AVB"),
    "ISCAN": ("426434006", "ISCAN"),
    "ILBBB": ("251120003", "ILBBB"),
    "ISCIN": ("425419005", "ISCIN"),
    "ISCLA": ("425623009", "ISCLA"),
    "LAO/LAE": ("67741000119109", "LAO/LAE"),
    "LPFB": ("445211001", "LPFB"),
    "LVH": ("164873001", "LVH"),
    "NDT": ("428750005", "NDT"),
    "RVH": ("89792004", "RVH"),
    "SEHYP": ("266249003", "SEHYP"),
}
SHARED18: tuple[str, ...] = tuple(SHARED18_MAP)


# The challenge scores these codes as one class (evaluation-2021 `weights.csv` equivalences):
# RBBB 59118001 == CRBBB 713427006 (Georgia codes complete RBBB mostly as 59118001),
# CLBBB 733534002 == LBBB 164909002.
SNOMED_EQUIVALENCES: dict[str, str] = {"59118001": "713427006", "733534002": "164909002"}

# The challenges' diagnosis vocabulary: every SNOMED-CT code of the 2020 and 2021 `dx_mapping_scored.csv` /
# `dx_mapping_unscored.csv` tables with its abbreviation (`cinc_codes.csv`, shipped with the package).
CINC_CODES_FILE = "cinc_codes.csv"
# Abbreviations the first 2020 CPSC release writes that the tables spell otherwise ("Normal" is sinus rhythm).
DX_ABBREVIATION_ALIASES: dict[str, str] = {"NORMAL": "426783006"}


def _abbreviation_key(text: str) -> str:
    """'I-AVB', 'iavb', 'I AVB' -> 'IAVB': the first CPSC release hyphenates what the tables write as one word."""
    return re.sub(r"[\s_-]", "", text).upper()


@cache
def cinc_vocabulary() -> tuple[frozenset[str], dict[str, str]]:
    """(known SNOMED-CT codes, abbreviation key -> code) of the challenges' diagnosis tables."""
    table = pd.read_csv(resources.files("ecgtl.data").joinpath(CINC_CODES_FILE), dtype=str)
    by_abbreviation = {_abbreviation_key(a): c for a, c in zip(table["abbreviation"], table["snomed_code"], strict=True)}
    return frozenset(table["snomed_code"]), {**by_abbreviation, **DX_ABBREVIATION_ALIASES}


def snomed_dx(tokens: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`#Dx` tokens -> (codes, unknown): an abbreviation of the challenge tables becomes its SNOMED-CT code
    (`RBBB` -> 59118001, `I-AVB` -> 270492004); `unknown` lists the tokens that are neither a code of the
    tables nor one of their abbreviations (they stay in `codes`, where no label set matches them)."""
    known, by_abbreviation = cinc_vocabulary()
    codes, unknown = [], []
    for token in tokens:
        code = token if token.isdigit() else by_abbreviation.get(_abbreviation_key(token), token)
        codes.append(code)
        if code not in known:
            unknown.append(token)
    return tuple(codes), tuple(unknown)


PTBXL_LABEL_SET_KINDS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")


@dataclass(frozen=True)
class LabelSet:
    """Classes plus, per code system, which codes switch each class on."""

    name: str
    classes: tuple[str, ...]
    snomed: Mapping[str, tuple[str, ...]] | None = None
    scp: Mapping[str, tuple[str, ...]] | None = None
    # code -> code it is merged into when `equivalences` is on (the CinC label sets carry theirs in `snomed`).
    equivalent: Mapping[str, str] = field(default_factory=lambda: dict(SNOMED_EQUIVALENCES))

    def _encode(self, records_codes: Sequence[Iterable[str]], class_codes: Mapping[str, tuple[str, ...]]) -> np.ndarray:
        column_of_code: dict[str, list[int]] = {}
        for j, name in enumerate(self.classes):
            for code in class_codes.get(name, ()):
                column_of_code.setdefault(code, []).append(j)
        matrix = np.zeros((len(records_codes), len(self.classes)), dtype=np.uint8)
        for i, codes in enumerate(records_codes):
            for code in codes:
                for j in column_of_code.get(code, ()):
                    matrix[i, j] = 1
        return matrix

    def encode_snomed(self, records_codes: Sequence[Iterable[str]], equivalences: bool = True) -> np.ndarray:
        """Multi-hot [records, classes] from SNOMED-CT code lists (CinC `#Dx`)."""
        return self._encode(records_codes, self.snomed_codes(equivalences))

    def snomed_codes(self, equivalences: bool = True) -> dict[str, tuple[str, ...]]:
        """class -> SNOMED-CT codes, with the challenge's equivalent codes merged in when asked."""
        if self.snomed is None:
            raise DatasetError(f"label set {self.name!r} is defined for PTB-XL SCP codes only, not SNOMED-CT")
        mapping = dict(self.snomed)
        if equivalences:
            for code, target in self.equivalent.items():
                for name, codes in mapping.items():
                    if target in codes and code not in codes:
                        mapping[name] = (*codes, code)
        return mapping

    def encode_scp(self, records_codes: Sequence[Iterable[str]]) -> np.ndarray:
        """Multi-hot [records, classes] from PTB-XL `scp_codes` keys."""
        if self.scp is None:
            raise DatasetError(f"label set {self.name!r} has no PTB-XL SCP mapping")
        return self._encode(records_codes, self.scp)


SHARED18_LABEL_SET = LabelSet(
    name="shared18",
    classes=SHARED18,
    snomed={name: (codes[0],) for name, codes in SHARED18_MAP.items()},
    scp={name: (codes[1],) for name, codes in SHARED18_MAP.items()},
)


# The scored classes of the PhysioNet/CinC challenges (the columns of their weights tables), as
# (abbreviation, SNOMED-CT codes), equivalent codes in one class with the official representative first.
CINC2020_SCORED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("IAVB", ("270492004",)), ("AF", ("164889003",)), ("AFL", ("164890007",)), ("Brady", ("426627000",)),
    ("CRBBB", ("713427006", "59118001")), ("IRBBB", ("713426002",)), ("LAnFB", ("445118002",)),
    ("LAD", ("39732003",)), ("LBBB", ("164909002",)), ("LQRSV", ("251146004",)), ("NSIVCB", ("698252002",)),
    ("PR", ("10370003",)), ("PAC", ("284470004", "63593006")), ("PVC", ("427172004", "17338001")),
    ("LPR", ("164947007",)), ("LQT", ("111975006",)), ("QAb", ("164917005",)), ("RAD", ("47665007",)),
    ("SA", ("427393009",)), ("SB", ("426177001",)), ("NSR", ("426783006",)), ("STach", ("427084000",)),
    ("TAb", ("164934002",)), ("TInv", ("59931005",)),
)
CINC2021_SCORED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AF", ("164889003",)), ("AFL", ("164890007",)), ("BBB", ("6374002",)), ("Brady", ("426627000",)),
    ("CLBBB", ("733534002", "164909002")), ("CRBBB", ("713427006", "59118001")), ("IAVB", ("270492004",)),
    ("IRBBB", ("713426002",)), ("LAD", ("39732003",)), ("LAnFB", ("445118002",)), ("LPR", ("164947007",)),
    ("LQRSV", ("251146004",)), ("LQT", ("111975006",)), ("NSIVCB", ("698252002",)), ("NSR", ("426783006",)),
    ("PAC", ("284470004", "63593006")), ("PR", ("10370003",)), ("PRWP", ("365413008",)),
    ("PVC", ("427172004", "17338001")), ("QAb", ("164917005",)), ("RAD", ("47665007",)), ("SA", ("427393009",)),
    ("SB", ("426177001",)), ("STach", ("427084000",)), ("TAb", ("164934002",)), ("TInv", ("59931005",)),
)


def _cinc_label_set(name: str, scored: tuple[tuple[str, tuple[str, ...]], ...]) -> LabelSet:
    return LabelSet(name, tuple(abbreviation for abbreviation, _ in scored), snomed=dict(scored), equivalent={})


CINC_LABEL_SETS: dict[str, LabelSet] = {
    "cinc2020": _cinc_label_set("cinc2020", CINC2020_SCORED),
    "cinc2021": _cinc_label_set("cinc2021", CINC2021_SCORED),
}


def _flag(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").fillna(0).astype(float) == 1.0


def ptbxl_label_set(kind: str, statements: pd.DataFrame) -> LabelSet:
    """A PTB-XL label set built from `scp_statements.csv` (index = SCP code), as in Strodthoff et al."""
    if kind not in PTBXL_LABEL_SET_KINDS:
        raise DatasetError(f"unknown PTB-XL label set {kind!r}; choose from {', '.join(PTBXL_LABEL_SET_KINDS)}")
    if kind == "all":
        codes = sorted(statements.index)
        return LabelSet(f"ptbxl-{kind}", tuple(codes), scp={c: (c,) for c in codes})
    if kind in ("form", "rhythm"):
        codes = sorted(statements.index[_flag(statements[kind])])
        return LabelSet(f"ptbxl-{kind}", tuple(codes), scp={c: (c,) for c in codes})
    diagnostic = statements[_flag(statements["diagnostic"])]
    if kind == "diagnostic":
        codes = sorted(diagnostic.index)
        return LabelSet(f"ptbxl-{kind}", tuple(codes), scp={c: (c,) for c in codes})
    column = "diagnostic_subclass" if kind == "subdiagnostic" else "diagnostic_class"
    groups = diagnostic.groupby(diagnostic[column].astype(str)).groups
    scp = {group: tuple(sorted(codes)) for group, codes in groups.items() if group and group != "nan"}
    return LabelSet(f"ptbxl-{kind}", tuple(sorted(scp)), scp=scp)


LABEL_SET_NAMES: tuple[str, ...] = ("shared18", *CINC_LABEL_SETS, *(f"ptbxl-{kind}" for kind in PTBXL_LABEL_SET_KINDS))


def get_label_set(name: str, scp_statements: pd.DataFrame | None = None) -> LabelSet:
    """Look a label set up by name (`shared18`, `ptbxl-all`, …; `all` is accepted for `ptbxl-all`)."""
    if name == "shared18":
        return SHARED18_LABEL_SET
    if name in CINC_LABEL_SETS:
        return CINC_LABEL_SETS[name]
    kind = name.removeprefix("ptbxl-")
    if kind in PTBXL_LABEL_SET_KINDS:
        if scp_statements is None:
            raise DatasetError(f"label set {name!r} needs PTB-XL's scp_statements.csv (a ptbxl: dataset)")
        return ptbxl_label_set(kind, scp_statements)
    raise DatasetError(f"unknown label set {name!r}; choose from {', '.join(LABEL_SET_NAMES)}")


def snomed_codes_of(label_set: str, equivalences: bool = True) -> dict[str, tuple[str, ...]]:
    """class -> SNOMED-CT codes of a label set (for the challenge metric); empty for PTB-XL-only sets."""
    if label_set not in ("shared18", *CINC_LABEL_SETS):
        return {}
    return get_label_set(label_set).snomed_codes(equivalences)


def published_counts(dx_mapping: pd.DataFrame, source_column: str, label_set: LabelSet = SHARED18_LABEL_SET,
                     equivalences: bool = False) -> dict[str, int]:
    """Per-class counts implied by a challenge `dx_mapping_*.csv` table for one source column.

    Applies the same class -> codes map as `encode_snomed`, so a wrong code in the map shows up as a wrong
    count. `source_column` is e.g. "Georgia", "PTB-XL" (2020) or "PTB_XL" (2021). Public: a user checks a label
    set (their own too) against a challenge's published counts.
    """
    code_column = next(c for c in dx_mapping.columns if c.replace(" ", "").lower() == "snomedctcode")
    counts_by_code = dict(zip(dx_mapping[code_column].astype(str), dx_mapping[source_column].astype(int), strict=True))
    mapping = label_set.snomed_codes(equivalences)
    return {name: int(sum(counts_by_code.get(code, 0) for code in codes)) for name, codes in mapping.items()}
