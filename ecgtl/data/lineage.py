"""Which records a model was trained on, so that evaluation can say how many of the records it scores the model
has seen (a leak guard).

A model bundle carries one `TrainingRecords` per dataset in its history: a fine-tuned model has its target's
training records and, inherited, those its pretrained model was trained on. Records are matched by id within
the same dataset (`sources.dataset_identity`: a synthetic spec, or the resolved folder), and across the
PTB-XL releases: the CinC challenge ships PTB-XL
as `HR00001`… where `HR` + 5 digits is PTB-XL's `ecg_id`, so a model pretrained on native PTB-XL and evaluated on
CinC data is checked too. Copies of a dataset in another folder are not recognised (documented limitation).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

_CINC_PTBXL = re.compile(r"^HR(\d{5})$")


def fingerprint_ids(record_ids: Sequence[str]) -> str:
    """Order-independent SHA-256 of a set of record ids."""
    return hashlib.sha256("\n".join(sorted(map(str, record_ids))).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainingRecords:
    """The records of one dataset a model was trained on."""

    spec: str  # as the user wrote it
    resolved: str  # `sources.dataset_identity`: the synthetic spec, or kind and folder (`cinc:/data/georgia`)
    split_seed: int
    record_ids: tuple[str, ...]
    fingerprint: str = ""

    @classmethod
    def of(cls, spec: str, resolved: str, split_seed: int, record_ids: Sequence[str]) -> TrainingRecords:
        ids = tuple(sorted(map(str, record_ids)))
        return cls(spec, resolved, split_seed, ids, fingerprint_ids(ids))

    def to_dict(self) -> dict:
        return {**asdict(self), "record_ids": list(self.record_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingRecords:
        return cls(data["spec"], data["resolved"], int(data["split_seed"]), tuple(data["record_ids"]),
                   data.get("fingerprint", ""))

    def seen(self, resolved: str, record_ids: Sequence[str]) -> list[str]:
        """Those of `record_ids` (of the dataset `resolved`) that are among these training records."""
        trained = set(self.record_ids)
        if resolved == self.resolved:
            return [r for r in record_ids if str(r) in trained]
        # Native PTB-XL only: a synthetic PTB-XL's ecg_ids are not the real ones.
        if self.resolved.startswith("ptbxl:") and resolved.startswith("cinc:"):
            ecg_ids = {int(r) for r in trained if str(r).isdigit()}
            return [r for r in record_ids if (m := _CINC_PTBXL.match(str(r))) and int(m[1]) in ecg_ids]
        return []


@dataclass(frozen=True)
class Overlap:
    """How many evaluated records one training dataset of the model holds."""

    training_spec: str
    record_ids: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.record_ids)

    def describe(self, n_evaluated: int) -> str:
        shown = ", ".join(self.record_ids[:3])
        return (f"{self.count} of {n_evaluated} evaluated records were training records of this model "
                f"(from {self.training_spec}; e.g. {shown})")


def overlaps(history: Sequence[TrainingRecords], resolved: str, record_ids: Sequence[str]) -> list[Overlap]:
    """Per training dataset in a model's history, the evaluated records it was trained on (non-zero only)."""
    found = []
    for training in history:
        seen = training.seen(resolved, record_ids)
        if seen:
            found.append(Overlap(training.spec, tuple(map(str, seen))))
    return found


# MLflow's input contexts, one per split a run used (`mlflow.data.context`).
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}
SOURCE_CONTEXT = "source"  # a fine-tune's pretraining data, as its own input


@dataclass(frozen=True)
class SplitDataset:
    """One split a run trained or was tested on, as MLflow's Datasets column shows it.

    `digest` hashes the cache key (source files and preprocessing) with the record fingerprint (which records,
    as the leak guard's `TrainingRecords.fingerprint`): it changes exactly when either changes. `profile` holds
    the records, per-class counts, fs, length and leads.
    """

    name: str  # `g12ec/train`: the spec's short name and the split
    context: str  # training, validation, testing, source
    digest: str
    spec: str
    path: str  # the prepared cache the records came from
    profile: dict

    @classmethod
    def of(cls, *, short_name: str, split: str, context: str, spec: str, cache_key: str, path: str,
           record_ids: Sequence[str], labels, classes: Sequence[str], fs: float, samples: int,
           leads: Sequence[str]) -> SplitDataset:
        """`labels` [records, classes] of exactly `record_ids`."""
        fingerprint = fingerprint_ids(record_ids)
        digest = hashlib.sha256(f"{cache_key}:{fingerprint}".encode()).hexdigest()[:16]
        counts = {name: int(count) for name, count in zip(classes, labels.sum(axis=0), strict=True)}
        profile = {"records": len(record_ids), "record_fingerprint": fingerprint, "cache_key": cache_key,
                   "classes": counts, "fs": float(fs), "samples": int(samples), "length_s": samples / float(fs),
                   "leads": list(leads)}
        return cls(f"{short_name}/{split}", context, digest, spec, path, profile)

    @classmethod
    def of_training_records(cls, records: TrainingRecords, short_name: str) -> SplitDataset:
        """The training data of a model a run started from (its bundle's history): no cache, only records."""
        digest = hashlib.sha256(f"{records.resolved}:{records.split_seed}:{records.fingerprint}".encode()).hexdigest()[:16]
        return cls(f"{short_name}/train", SOURCE_CONTEXT, digest, records.spec, records.resolved,
                   {"records": len(records.record_ids), "record_fingerprint": records.fingerprint,
                    "split_seed": records.split_seed})
