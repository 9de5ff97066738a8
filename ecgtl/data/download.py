"""`ecgtl data download`: fetch PTB-XL 1.0.3 or the Georgia part of the CinC 2021 training set.

Files come through wfdb's PhysioNet downloader (`dl_pn_file`: it appends to partially downloaded files and
can point at a mirror via `db_index_url`). Every file is verified against the release's `SHA256SUMS.txt`;
a mismatch is reported and the file fetched again, never kept. Verified files are remembered in a small
ledger so an interrupted download resumes without re-hashing what was already checked.

Nothing outside `--to` is ever written, appended to or deleted: every path of the checksum list is validated
once, before anything is fetched (relative, no `..`, no drive or absolute part, and resolving, symlinks
followed, inside the target folder); one offending line stops the download with a one-line error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecgtl.config import check_choice
from ecgtl.errors import EcgtlError
from ecgtl.files import read_text_file
from ecgtl.progress import progress_bar

PHYSIONET_FILES_URL = "https://physionet.org/files/"
_LEDGER = ".ecgtl-download.json"
# Longest file name and path (bytes) that Linux file systems take: longer checksum-list names are refused.
_NAME_MAX, _PATH_MAX = 255, 4096
_ATTEMPTS = 3


@dataclass(frozen=True)
class Release:
    name: str
    database: str  # PhysioNet path "name/version"
    prefix: str  # only files under this path of the release
    description: str


RELEASES: dict[str, Release] = {
    "ptbxl": Release("ptbxl", "ptb-xl/1.0.3", "", "PTB-XL 1.0.3 (21 837 records, 100 and 500 Hz)"),
    "g12ec": Release("g12ec", "challenge-2021/1.0.3", "training/georgia/",
                     "Georgia 12-lead ECG challenge database (CinC 2021 training set, 10 344 records)"),
}


@dataclass
class DownloadReport:
    release: str
    folder: Path
    files: int = 0
    fetched: int = 0
    already_verified: int = 0
    refetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def parse_checksums(text: str, prefix: str = "") -> dict[str, str]:
    """`sha256sum` lines ('HASH  path') -> {path: hash}, keeping paths under `prefix`."""
    checksums = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            continue
        digest, path = parts[0].lower(), parts[1].strip().lstrip("*").removeprefix("./")
        if path.startswith(prefix):
            checksums[path] = digest
    return checksums


def confined_path(folder: Path, relative: str, origin: str = "checksum list") -> Path:
    """`folder / relative`, or an `EcgtlError` when `relative` could reach outside `folder`."""
    problem = None
    parts = relative.split("/")
    if not relative or "\0" in relative or "\\" in relative:
        problem = "is empty or holds a NUL or backslash"
    elif relative.startswith("/") or re.match(r"^[A-Za-z]:", relative):
        problem = "is absolute"
    elif any(part in ("", ".", "..") for part in parts):
        problem = "has an empty, '.' or '..' component"
    elif any(len(part.encode()) > _NAME_MAX for part in parts) or len(relative.encode()) > _PATH_MAX:
        problem = f"has a name longer than the file system allows ({_NAME_MAX} bytes a name, {_PATH_MAX} a path)"
    elif relative == _LEDGER or relative.startswith(f"{_LEDGER}."):
        problem = "would overwrite the download ledger"
    else:
        local = folder / relative
        if not local.resolve().is_relative_to(folder.resolve()):
            problem = f"resolves outside {folder} (through a symlink)"
    if problem:
        raise EcgtlError(f"{origin}: path {relative!r} {problem}; refusing to download anything")
    return folder / relative


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_text(url: str) -> str:
    from wfdb.io import _url

    try:
        with _url.openurl(url, "rb") as handle:
            return handle.read().decode()
    except Exception as exc:  # network errors come in many types
        raise EcgtlError(f"{url}: cannot fetch checksum list ({exc})") from None


def _load_ledger(folder: Path) -> dict[str, list[int]]:
    """What earlier runs verified: {path: [size, mtime_ns]}. A missing, unreadable or malformed ledger (`[]`,
    wrong types) is an empty one: every file is then checked again, nothing is trusted unverified."""
    try:
        ledger = json.loads(read_text_file(folder / _LEDGER, "download ledger"))
    except (EcgtlError, json.JSONDecodeError):
        return {}
    if not isinstance(ledger, dict):
        return {}
    return {path: stamp for path, stamp in ledger.items()
            if isinstance(path, str) and isinstance(stamp, list) and len(stamp) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in stamp)}


def _save_ledger(folder: Path, ledger: dict[str, list[int]]) -> None:
    tmp = folder / f"{_LEDGER}.tmp"
    tmp.write_text(json.dumps(ledger))
    tmp.replace(folder / _LEDGER)


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def download(name: str, folder: Path, mirror: str | None = None, progress: bool = True) -> DownloadReport:
    """Download (or resume) a release into `folder`, verifying every file's SHA-256."""
    from wfdb.io import download as wfdb_download

    check_choice("dataset", name, RELEASES)
    release = RELEASES[name]
    index_url = (mirror or PHYSIONET_FILES_URL).rstrip("/") + "/"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksums = parse_checksums(
        _fetch_text(posixpath.join(index_url, release.database, "SHA256SUMS.txt")), release.prefix
    )
    if not checksums:
        raise EcgtlError(f"{release.database}/SHA256SUMS.txt lists no files under {release.prefix!r}")
    origin = f"{index_url}{release.database}/SHA256SUMS.txt"
    for relative in checksums:  # all of them, before the first byte is written
        confined_path(folder, relative, origin)
    report = DownloadReport(name, folder, files=len(checksums))
    ledger = _load_ledger(folder)
    previous_url = wfdb_download.config.db_index_url
    wfdb_download.set_db_index_url(index_url)
    try:
        with progress_bar(f"downloading {name}", items=sorted(checksums.items()), show=progress,
                          item_name=lambda item: item[0] if item else "") as bar:
            for position, (relative, digest) in enumerate(bar):
                local = folder / relative
                if relative in ledger and local.exists() and ledger[relative] == _stamp(local):
                    report.already_verified += 1
                    continue
                if _fetch_verified(wfdb_download, release, folder, relative, digest, report):
                    ledger[relative] = _stamp(local)
                    report.fetched += 1
                else:
                    report.failed.append(relative)
                if position % 200 == 0:
                    _save_ledger(folder, ledger)
    finally:
        wfdb_download.set_db_index_url(previous_url)
        _save_ledger(folder, ledger)
    return report


def _fetch_verified(wfdb_download, release: Release, folder: Path, relative: str, digest: str,
                    report: DownloadReport) -> bool:
    """Fetch one file (resuming a partial one) until its checksum matches, at most `_ATTEMPTS` times."""
    local = confined_path(folder, relative)  # again: a symlink may have appeared since the list was checked
    subdir, basefile = posixpath.split(relative)
    local.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(_ATTEMPTS):
        try:
            wfdb_download.dl_pn_file((basefile, subdir, release.database, str(folder), True, False))
        except Exception as exc:  # interrupted transfer: keep what arrived, wfdb appends the rest next time
            print(f"{relative}: transfer failed ({exc}); retrying", file=sys.stderr)
            continue
        if local.exists() and sha256_of(local) == digest:
            return True
        print(f"{relative}: checksum mismatch; discarding and fetching again", file=sys.stderr)
        if relative not in report.refetched:
            report.refetched.append(relative)
        confined_path(folder, relative).unlink(missing_ok=True)
    if local.exists() and sha256_of(local) != digest:
        confined_path(folder, relative).unlink()
    return False


def render_report(report: DownloadReport) -> str:
    lines = [
        f"{report.release}: {report.files} files in {report.folder}",
        f"  fetched and verified {report.fetched}, already verified {report.already_verified}",
    ]
    if report.refetched:
        lines.append(f"  checksum mismatches re-fetched: {len(report.refetched)} ({', '.join(report.refetched[:5])})")
    if report.failed:
        lines.append(f"  FAILED after {_ATTEMPTS} attempts: {len(report.failed)} ({', '.join(report.failed[:5])})")
    return os.linesep.join(lines)
