"""`ecgtl data inspect`: what a dataset folder holds, as a plain-text report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgtl.data.cache import scan_records
from ecgtl.data.record_source import RecordProblem
from ecgtl.data.sources import open_source, resolve_spec
from ecgtl.data.spec import DatasetSpec


@dataclass
class Inspection:
    spec: DatasetSpec
    format_name: str
    n_listed: int
    records: pd.DataFrame  # the records that read
    problems: list[RecordProblem]
    label_set: str
    classes: tuple[str, ...]
    class_counts: np.ndarray

    def render(self) -> str:
        lines = [
            f"dataset   {self.spec}",
            f"format    {self.format_name}",
            f"records   {len(self.records)} readable of {self.n_listed} listed, {len(self.problems)} skipped",
        ]
        if len(self.records):
            origins = self.records["origin"].value_counts()
            lines.append("origins   " + ", ".join(f"{name} {count}" for name, count in origins.items()))
            rates = self.records["fs"].value_counts().sort_index()
            lines.append("fs        " + ", ".join(f"{fs:g} Hz: {count}" for fs, count in rates.items()))
            seconds = self.records["n_samples"] / self.records["fs"]
            lines.append(
                f"length    min {seconds.min():.1f} s, median {seconds.median():.1f} s, max {seconds.max():.1f} s"
            )
            no_codes = int((self.records["codes"].map(len) == 0).sum())
            lines.append(f"no codes  {no_codes} records carry no diagnosis codes")
            lines.append(f"unknown   {unknown_codes_line(self.records)}")
            lines.append(f"labels    {self.label_set}: {int(self.class_counts.any(axis=1).sum())} records with "
                         "at least one class")
            width = max(len(c) for c in self.classes)
            for name, count in zip(self.classes, self.class_counts.sum(axis=0), strict=True):
                lines.append(f"  {name:<{width}}  {int(count):>6}")
        if self.problems:
            lines.append(f"skipped   {len(self.problems)} records:")
            lines.extend(f"  {problem.reason}" for problem in self.problems)
        return "\n".join(lines)


def unknown_codes_line(records: pd.DataFrame, examples: int = 5) -> str:
    """How many records carry codes that the dataset's vocabulary does not define, with the commonest ones."""
    unknown = records["unknown_codes"] if "unknown_codes" in records else pd.Series([()] * len(records))
    counts = pd.Series([code for codes in unknown for code in codes], dtype=object).value_counts()
    n_records = int((unknown.map(len) > 0).sum())
    if not n_records:
        return "0 records carry codes ecgtl does not know"
    shown = ", ".join(f"{code} ({count})" for code, count in counts.head(examples).items())
    more = f", and {len(counts) - examples} more" if len(counts) > examples else ""
    return f"{n_records} records carry codes ecgtl does not know (they match no class): {shown}{more}"


def inspect_dataset(spec: DatasetSpec | str, label_set: str = "shared18", fs: float = 100,
                    progress: bool = True) -> Inspection:
    """Read every record of a dataset and summarise it (format, rates, lengths, class counts, problems)."""
    spec = resolve_spec(spec)
    source = open_source(spec, fs=fs)
    frame, problems = scan_records(source, progress=progress)
    labels, classes = source.label_matrix(label_set)
    readable = frame["problem"].isna().to_numpy()
    return Inspection(
        spec=spec,
        format_name=source.format_name,
        n_listed=len(frame) + len(source.problems),
        records=frame[readable].reset_index(drop=True),
        problems=problems,
        label_set=label_set,
        classes=classes,
        class_counts=labels[readable],
    )
