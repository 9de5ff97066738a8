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

import numpy as np
import pandas as pd

from ecgtl.data.labels import LabelSet, get_label_set
from ecgtl.data.spec import SPEC_KINDS, DatasetSpec, detect_layout, parse_spec
from ecgtl.files import find_files

__all__ = ["SPEC_KINDS", "DatasetSpec", "RecordProblem", "RecordSource", "dataset_identity", "detect_layout",
           "fingerprint_of", "open_source", "parse_spec", "resolve_spec"]

@dataclass(frozen=True)
class RecordProblem:
    """A record that was skipped, with a one-line reason naming the file."""

    record_id: str
    path: str
    reason: str


@dataclass
class RecordSource(ABC):
    """Records of one dataset: an index (one row per readable-looking record) plus indexing problems.

    `index` has at least: record_id, header_path, age, sex, codes (tuple), unknown_codes (tuple: codes the
    dataset's vocabulary does not define), origin.
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
        from ecgtl.data.synthetic import materialise  # scipy: only when a synthetic spec is used

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
    return hash_files(find_files(root, ".hea"), root)


def open_source(spec: DatasetSpec | str, fs: float = 100) -> RecordSource:
    """Open the record source a spec names (generating synthetic data on first use)."""
    spec = resolve_spec(spec)
    if spec.kind == "ptbxl":
        from ecgtl.data.ptbxl import PtbxlSource

        return PtbxlSource(Path(spec.target), fs=fs)
    from ecgtl.data.cinc import CincSource

    return CincSource(Path(spec.target))
