"""Dataset specs and the common interface of record sources (PTB-XL native, CinC .hea/.mat, synthetic).

A *dataset spec* names a source everywhere (CLI, MLflow params, cache keys):
`ptbxl:PATH`, `cinc:PATH`, `synthetic:ptbxl?n=3000&seed=0`, `synthetic:g12ec?n=1500&seed=0`.
A bare path is accepted too and its layout detected.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd

from ecgtl.data.labels import LabelSet, get_label_set
from ecgtl.errors import DatasetError

SPEC_KINDS = ("ptbxl", "cinc", "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec. `target` is a path for ptbxl/cinc and a layout name for synthetic."""

    kind: str
    target: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def options(self) -> dict[str, str]:
        return dict(self.params)

    def __str__(self) -> str:
        query = f"?{urlencode(self.params, safe='/')}" if self.params else ""
        return f"{self.kind}:{self.target}{query}"

    @property
    def short_name(self) -> str:
        """A few characters for run names: `g12ec`, `ptbxl`, or the folder name."""
        return self.target if self.kind == "synthetic" else Path(self.target).name


def parse_spec(text: str) -> DatasetSpec:
    """Parse a dataset spec; a bare existing path is detected as ptbxl or cinc."""
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    if not sep or kind not in SPEC_KINDS:
        if not text:
            raise DatasetError("empty dataset spec: write ptbxl:PATH, cinc:PATH or synthetic:ptbxl?n=3000&seed=0")
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(
                f"{text}: no such folder, and not a dataset spec (ptbxl:PATH, cinc:PATH, synthetic:ptbxl?n=3000)"
            )
        return DatasetSpec(detect_layout(path), str(path.resolve()))
    target, _, query = rest.partition("?")
    if not target:
        raise DatasetError(f"dataset spec {text!r} names no path or layout")
    params = tuple(sorted(parse_qsl(query, keep_blank_values=True)))
    if kind == "synthetic":
        return DatasetSpec(kind, target, params)
    return DatasetSpec(kind, str(Path(target).expanduser().resolve()), params)


def detect_layout(root: Path) -> str:
    """'ptbxl' when a `ptbxl_database*.csv` is at the top, 'cinc' when `.hea` files lie below."""
    if not root.exists():
        raise DatasetError(f"{root}: dataset path does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset path is not a folder")
    if any(root.glob("ptbxl_database*.csv")):
        return "ptbxl"
    if next(root.rglob("*.hea"), None) is not None:
        return "cinc"
    raise DatasetError(f"{root}: neither PTB-XL layout (ptbxl_database.csv) nor CinC layout (*.hea files)")


@dataclass(frozen=True)
class RecordProblem:
    """A record that was skipped, with a one-line reason naming the file."""

    record_id: str
    path: str
    reason: str


@dataclass
class RecordSource(ABC):
    """Records of one dataset: an index (one row per readable-looking record) plus indexing problems.

    `index` has at least: record_id, header_path, age, sex, codes (tuple), origin.
    """

    root: Path
    index: pd.DataFrame = field(init=False)
    problems: list[RecordProblem] = field(init=False, default_factory=list)
    format_name: str = field(init=False, default="")
    code_system: str = field(init=False, default="snomed")
    gain_errata: Mapping[float, float] = field(init=False, default_factory=dict)

    def label_set(self, name: str) -> LabelSet:
        return get_label_set(name)

    def label_matrix(self, label_set: str, equivalences: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
        """Multi-hot [records, classes] in index order, and the class names."""
        chosen = self.label_set(label_set)
        codes = list(self.index["codes"])
        if self.code_system == "scp":
            return chosen.encode_scp(codes), chosen.classes
        return chosen.encode_snomed(codes, equivalences=equivalences), chosen.classes

    @abstractmethod
    def splits(self, seed: int, split_dir: Path) -> np.ndarray:
        """'train'/'val'/'test' per index row."""



def hash_files(paths: list[Path], root: Path) -> str:
    """Hash of relative names, sizes and modification times: changes when a file is added, removed or edited."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{os.path.relpath(path, root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resolve_spec(spec: DatasetSpec | str) -> DatasetSpec:
    """A spec that names files on disk: synthetic specs are generated (once) and become ptbxl:/cinc: specs."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "synthetic":
        from ecgtl.data.synthetic import materialise

        return materialise(spec)
    return spec


def dataset_identity(spec: DatasetSpec | str) -> str:
    """What makes two specs the same dataset: a synthetic spec itself (generation is deterministic, wherever the
    cache lies), else the kind and resolved folder (`cinc:/data/georgia`)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    return str(parsed) if parsed.kind == "synthetic" else str(resolve_spec(parsed))


def fingerprint_of(spec: DatasetSpec | str) -> str:
    """A cheap hash (file names, sizes, mtimes of index files) that changes when the records change.

    It avoids building the index, so that a cache hit costs well under a second even at PTB-XL size.
    """
    spec = resolve_spec(spec)
    root = Path(spec.target)
    if spec.kind == "ptbxl":
        from ecgtl.data.ptbxl import find_database_csv

        return hash_files([find_database_csv(root), root / "scp_statements.csv"], root)
    detect_layout(root)
    return hash_files(sorted(root.rglob("*.hea")), root)


def open_source(spec: DatasetSpec | str, fs: float = 100) -> RecordSource:
    """Open the record source a spec names (generating synthetic data on first use)."""
    spec = resolve_spec(spec)
    if spec.kind == "ptbxl":
        from ecgtl.data.ptbxl import PtbxlSource

        return PtbxlSource(Path(spec.target), fs=fs)
    from ecgtl.data.cinc import CincSource

    return CincSource(Path(spec.target))
