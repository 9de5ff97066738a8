"""The record-source factory: open the source a dataset spec names, and cheap identities of a dataset.

A *dataset spec* names a source everywhere (CLI, MLflow params, cache keys):
`ptbxl:PATH`, `cinc:PATH`, `synthetic:ptbxl?n=3000&seed=0`, `synthetic:g12ec?n=1500&seed=0`.
A bare path is accepted too and its layout detected.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ecgtl.data.cinc import CincSource
from ecgtl.data.ptbxl import PtbxlSource, find_database_csv
from ecgtl.data.record_source import RecordSource
from ecgtl.data.spec import DatasetSpec, detect_layout, parse_spec
from ecgtl.files import find_files


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
        return hash_files([find_database_csv(root), root / "scp_statements.csv"], root)
    detect_layout(root)
    return hash_files(find_files(root, ".hea"), root)


def open_source(spec: DatasetSpec | str, fs: float = 100) -> RecordSource:
    """Open the record source a spec names (generating synthetic data on first use)."""
    spec = resolve_spec(spec)
    if spec.kind == "ptbxl":
        return PtbxlSource(Path(spec.target), fs=fs)
    return CincSource(Path(spec.target))
