"""The interface every record source implements (PTB-XL native, CinC .hea/.mat; synthetic data is written as
one of the two), kept apart from the factory in `sources.py` so the readers need not import the factory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.data.labels import LabelSet, get_label_set


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
