"""Preprocessed cache: one memory-mapped float32 array per split, plus labels, an index and a manifest.

Policy (documented in docs/data.md):
- every record is resampled to `fs` with scipy's polyphase filter (`resample_poly`);
- records longer than `length_s` are centre-cropped (the first seconds often hold electrode-settling
  artefacts), shorter ones are zero-padded at the end; `valid_samples` in the index says how much is real;
- `record_fs > 0` first brings each record to that rate, then to `fs` (records that arrive at another rate
  than the model's: a 50 Hz recording seen by a 100 Hz model has nothing above 25 Hz);
- the cache key hashes exactly: spec, source fingerprint, fs, record_fs, length, label set, equivalences, split seed and
  `CACHE_FORMAT_VERSION`; a changed input makes a new cache, an unchanged one is reopened;
- a cache is built in a temporary folder and renamed into place, so a killed `prepare` never leaves a cache
  that later loads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl import __version__
from ecgtl.config import check_choice, check_options
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.record_source import RecordProblem, RecordSource
from ecgtl.data.records import parse_header, read_signal
from ecgtl.data.signal import resample, resample_centre
from ecgtl.data.sources import fingerprint_of, open_source, resolve_spec
from ecgtl.data.splits import SPLITS
from ecgtl.errors import DatasetError, RecordError
from ecgtl.inputs import STANDARD_LEADS
from ecgtl.paths import cache_root
from ecgtl.progress import map_chunks

# Bump when the cache's content for the same inputs would change (resampling, cropping, layout).
CACHE_FORMAT_VERSION = "3"  # 2: CinC #Dx abbreviations mapped to SNOMED-CT; 3: PTB-XL above 100 Hz without 500 Hz files
_CHUNK = 64
_IN_PROCESS_BELOW = 256  # a process pool costs more than it saves for a handful of records




@dataclass(frozen=True)
class _ReadTask:
    header_paths: tuple[str, ...]
    rows: tuple[int, ...]
    root: str
    gain_errata: Mapping[float, float]
    fs_out: float | None
    n_out: int
    out_path: str | None
    record_fs: float = 0.0  # > 0: each record first brought to this rate (as if recorded at it)


def _run_read_task(task: _ReadTask) -> list[tuple[int, float, int, int, str | None]]:
    """Read, resample and crop a chunk of records; write rows into the split's memmap when given.

    Returns (row, fs, n_samples, valid_samples, problem) per record; `problem` is None when it read.
    """
    out = np.load(task.out_path, mmap_mode="r+") if task.out_path else None
    results = []
    for header_path, row in zip(task.header_paths, task.rows, strict=True):
        try:
            header = parse_header(header_path)
            signal = read_signal(header, task.gain_errata, Path(task.root))
        except RecordError as exc:
            results.append((row, float("nan"), 0, 0, str(exc)))
            continue
        except Exception as exc:  # a reader bug must cost one record, not the whole build
            results.append((row, float("nan"), 0, 0, f"{header_path}: unexpected {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        valid = header.n_samples
        if out is not None:
            fs_in = header.fs
            if task.record_fs and task.record_fs != fs_in:
                signal, fs_in = resample(signal, fs_in, task.record_fs), task.record_fs
            fixed, valid = resample_centre(signal, fs_in, task.fs_out, task.n_out)
            out[row] = fixed
        results.append((row, header.fs, header.n_samples, valid, None))
    if out is not None:
        out.flush()
    return results


def _chunks(header_paths: Sequence[str], rows: Sequence[int], size: int) -> Iterator[tuple[tuple[str, ...], tuple[int, ...]]]:
    for start in range(0, len(rows), size):
        yield tuple(header_paths[start:start + size]), tuple(rows[start:start + size])


def _run_tasks(tasks: list[_ReadTask], n_records: int, workers: int | None, label: str,
               progress: bool) -> list[tuple[int, float, int, int, str | None]]:
    """Run read tasks on all cores with a progress bar; results in task order."""
    workers = workers or os.cpu_count() or 1
    results = map_chunks(_run_read_task, tasks, [len(task.rows) for task in tasks], label=label, show=progress,
                         workers=1 if n_records < _IN_PROCESS_BELOW else workers)
    return [item for result in results for item in result]


def scan_records(source: RecordSource, workers: int | None = None,
                 progress: bool = True) -> tuple[pd.DataFrame, list[RecordProblem]]:
    """Read every record of a source (no writing): per-record fs, length and problems, for `inspect`."""
    paths = list(source.index["header_path"])
    tasks = [_ReadTask(p, r, str(source.root), source.gain_errata, None, 0, None)
             for p, r in _chunks(paths, range(len(paths)), _CHUNK)]
    results = _run_tasks(tasks, len(paths), workers, "reading", progress)
    frame = source.index.copy()
    frame["fs"] = [r[1] for r in results]
    frame["n_samples"] = [r[2] for r in results]
    frame["problem"] = [r[4] for r in results]
    problems = list(source.problems) + [
        RecordProblem(rid, path, result[4])
        for rid, path, result in zip(frame["record_id"], frame["header_path"], results, strict=True)
        if result[4]
    ]
    return frame, problems


def cache_key(config: PrepareConfig, fingerprint: str) -> str:
    payload = {**asdict(config), "fingerprint": fingerprint, "format": CACHE_FORMAT_VERSION}
    if not config.record_fs:
        del payload["record_fs"]  # caches built before the option keep their keys
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class SplitData:
    """One split of a prepared cache: signals [n, 12, samples] (memmap), labels [n, classes], index rows."""

    signals: np.ndarray
    labels: np.ndarray
    index: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)


class ConcatenatedSignals:
    """Rows of several [n_i, 12, samples] arrays read as one [sum n_i, 12, samples] (memmaps stay on disk: a
    union of datasets costs no more memory than its largest batch)."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(part) for part in self.parts)])
        self.shape = (int(self.offsets[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rows = np.arange(*key.indices(len(self))) if isinstance(key, slice) else np.atleast_1d(np.asarray(key))
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        part_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for part in np.unique(part_of):
            chosen = part_of == part
            out[chosen] = self.parts[part][rows[chosen] - self.offsets[part]]
        return out


def concatenate_splits(splits: Sequence[SplitData]) -> SplitData:
    """One split of several datasets' splits (same fs, length and classes), in the given order."""
    if len(splits) == 1:
        return splits[0]
    return SplitData(ConcatenatedSignals([s.signals for s in splits]), np.concatenate([s.labels for s in splits]),
                     pd.concat([s.index for s in splits], ignore_index=True))


@dataclass
class PreparedData:
    """A finished cache on disk."""

    path: Path
    manifest: dict

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def fs(self) -> float:
        return float(self.manifest["config"]["fs"])

    def split(self, name: str) -> SplitData:
        check_choice("split", name, SPLITS, DatasetError)
        index = self.index
        return SplitData(
            signals=np.load(self.path / f"{name}.npy", mmap_mode="r"),
            labels=np.load(self.path / f"{name}_labels.npy"),
            index=index[index["split"] == name].reset_index(drop=True),
        )

    @cached_property
    def index(self) -> pd.DataFrame:
        """All records (read once, shared by the three splits)."""
        return pd.read_csv(self.path / "index.csv", dtype={"record_id": str})


def load_cache(path: Path) -> PreparedData:
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.exists():
        raise DatasetError(f"{path}: not a finished ecgtl cache (no manifest.json)")
    return PreparedData(Path(path), json.loads(manifest_path.read_text()))


def prepare(config: PrepareConfig, cache_dir: Path | None = None, strict: bool = False,
            workers: int | None = None, progress: bool = True) -> PreparedData:
    """Build (or reopen) the cache for `config`. `strict` turns any skipped record into an error."""
    check_options(config)
    spec = resolve_spec(config.spec)
    root = Path(cache_dir) if cache_dir else cache_root()
    key = cache_key(config, fingerprint_of(spec))
    final = root / key
    if (final / "manifest.json").exists():
        cached = load_cache(final)
        if strict and cached.manifest["problems"]:
            raise RecordError(cached.manifest["problems"][0]["reason"])
        return cached

    started = time.perf_counter()
    source = open_source(spec, fs=config.fs)
    if strict and source.problems:
        raise RecordError(source.problems[0].reason)
    labels, classes = source.label_matrix(config.label_set, equivalences=config.equivalences)
    split = source.splits(config.split_seed, root / "splits")
    n_out = int(round(config.length_s * config.fs))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    try:
        index = source.index.drop(columns=["codes", "unknown_codes"], errors="ignore").assign(split=split)
        index["row"] = 0
        tasks = []
        for name in SPLITS:
            members = np.flatnonzero(split == name)
            index.loc[members, "row"] = np.arange(len(members))
            out_path = tmp / f"{name}.npy"
            np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32,
                                      shape=(len(members), len(STANDARD_LEADS), n_out)).flush()
            reserve_disk(out_path)
            paths = list(source.index["header_path"].iloc[members])
            tasks += [_ReadTask(p, r, str(source.root), source.gain_errata, config.fs, n_out, str(out_path),
                                config.record_fs)
                      for p, r in _chunks(paths, list(range(len(members))), _CHUNK)]
        order = np.concatenate([np.flatnonzero(split == name) for name in SPLITS])
        results = _run_tasks(tasks, len(order), workers, f"preparing {spec.short_name} @ {config.fs:g} Hz", progress)
        index.loc[order, "fs_original"] = [r[1] for r in results]
        index.loc[order, "samples_original"] = [r[2] for r in results]
        index.loc[order, "valid_samples"] = [r[3] for r in results]
        failed = np.zeros(len(index), dtype=bool)
        problems = list(source.problems)
        for position, result in zip(order, results, strict=True):
            if result[4]:
                failed[position] = True
                problems.append(RecordProblem(index.at[position, "record_id"], index.at[position, "header_path"], result[4]))
        if strict and failed.any():
            raise RecordError(problems[len(source.problems)].reason)
        kept = _write_splits(tmp, index, labels, split, failed)
        elapsed = time.perf_counter() - started
        manifest = {
            "config": asdict(config),
            "resolved_spec": str(spec),
            "key": key,
            "classes": list(classes),
            "leads": list(STANDARD_LEADS),
            "samples": n_out,
            "counts": {name: int((kept["split"] == name).sum()) for name in SPLITS},
            "code_version": __version__,
            "format_version": CACHE_FORMAT_VERSION,
            "seconds": round(elapsed, 3),
            "problems": [asdict(p) for p in problems],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same cache first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DatasetError(f"{root}: no space left on the device for the cache of {spec.short_name} "
                               f"({exc.strerror}); free some space or set ECGTL_CACHE_DIR elsewhere") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_cache(final)


def reserve_disk(path: Path) -> None:
    """Allocate a (sparse) memmap file's blocks now: writing into a memory map on a full disk kills the process
    with SIGBUS and no message; reserving first turns that into an OSError (ENOSPC) before any record is read."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A file system without fallocate (EOPNOTSUPP, EINVAL): writes then fail as they always did.
    finally:
        os.close(fd)


def _write_splits(tmp: Path, index: pd.DataFrame, labels: np.ndarray, split: np.ndarray,
                  failed: np.ndarray) -> pd.DataFrame:
    """Labels and index per split; drops rows of records that failed to read (compacting the memmap)."""
    for name in SPLITS:
        members = np.flatnonzero(split == name)
        bad = failed[members]
        if bad.any():
            old_path = tmp / f"{name}.npy"
            old = np.load(old_path, mmap_mode="r")
            compact = np.lib.format.open_memmap(tmp / f"{name}.compact.npy", mode="w+", dtype=np.float32,
                                                shape=(int((~bad).sum()), *old.shape[1:]))
            reserve_disk(tmp / f"{name}.compact.npy")
            compact[:] = old[~bad]
            compact.flush()
            del old, compact
            (tmp / f"{name}.compact.npy").replace(old_path)
        np.save(tmp / f"{name}_labels.npy", labels[members[~bad]])
        index.loc[members[~bad], "row"] = np.arange(int((~bad).sum()))
    kept = index[~failed].reset_index(drop=True)
    kept.to_csv(tmp / "index.csv", index=False)
    return kept
