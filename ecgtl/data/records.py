"""One ECG record on disk: WFDB header parsing and fast payload reading.

`wfdb.rdsamp` costs about 5 ms per PTB-XL record, which dominates a naive pipeline. Almost every file we
meet is format 16 (`.dat`) or a MAT v4 int16 matrix (`.mat`, CinC), so we parse the header ourselves and read
the payload with one `numpy.fromfile`. Anything else (other formats, skew, several payload files, MAT v5)
falls back to wfdb or scipy, which are slower but general. Values are computed exactly as wfdb does
((digital - baseline) / gain in float64, -32768 as NaN) and then stored as float32.

Hostile or broken files are per-record problems (`RecordError`, one line naming the file), never a traceback,
a hang or a huge allocation:
- headers are read only from regular files (not FIFOs or devices, also behind symlinks), at most
  `MAX_HEADER_BYTES`; every field is parsed with validation: sampling frequency finite within `FS_RANGE`,
  1..`MAX_SIGNALS` signals, 1..`MAX_SAMPLES` samples per signal, known formats (`FORMAT_BITS`) only;
- a payload must be a plain file name beside its header that resolves (symlinks too) inside the dataset root,
  and its size must match what the header implies before anything is allocated;
- MAT files must hold an int16 (or any numeric, via scipy) matrix named `val` of the header's shape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgtl.errors import RecordError
from ecgtl.files import read_regular_file
from ecgtl.inputs import FS_RANGE, LEAD_BY_UPPER, MAX_ABS_MV, STANDARD_LEADS

__all__ = ["STANDARD_LEADS"]

# WFDB's default ADC gain when a header writes 0 (uncalibrated).
_WFDB_DEFAULT_GAIN = 200.0
# WFDB marks invalid samples in format 16 with the most negative value; wfdb reads them as NaN.
_FMT16_INVALID = -32768
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
_MAT_V4_INT16_LE = 30  # MOPT: little-endian, int16, full numeric matrix
_MAT_V4_HEADER_BYTES = 20

# Limits that keep a hostile header from costing memory or time (documented in docs/data.md).
MAX_HEADER_BYTES = 1 << 20
MAX_SIGNALS = 64
MAX_SAMPLES = 2_000_000  # per signal: 66 min at 500 Hz; real 12-lead records have 5 000 to ~500 000
# Bits per sample of the WFDB storage formats we read (310/311 pack 3 samples into 4 bytes).
FORMAT_BITS: dict[str, float] = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
                                 "212": 12, "310": 32 / 3, "311": 32 / 3}


@dataclass(frozen=True)
class SignalSpec:
    """One signal line of a WFDB header."""

    file_name: str
    fmt: str
    byte_offset: int
    has_skew: bool
    gain: float
    baseline: int
    units: str
    description: str


@dataclass(frozen=True)
class Header:
    """A parsed WFDB header (`.hea`), tolerant of the CinC 2020 quirks."""

    path: Path
    record_name: str
    fs: float
    n_samples: int
    signals: tuple[SignalSpec, ...]
    comments: tuple[str, ...] = ()

    def comment_value(self, key: str) -> str | None:
        """Value of a `#Key: value` comment; `# Key:` and any case are accepted."""
        wanted = key.lower()
        for line in self.comments:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == wanted:
                return value.strip()
        return None

    @property
    def age(self) -> float | None:
        value = self.comment_value("Age")
        try:
            age = float(value) if value is not None else None
        except ValueError:
            return None
        return None if age is None or np.isnan(age) else age

    @property
    def sex(self) -> str | None:
        return normalise_sex(self.comment_value("Sex"))

    @property
    def dx_codes(self) -> tuple[str, ...]:
        value = self.comment_value("Dx")
        if not value:
            return ()
        return tuple(code.strip() for code in value.split(",") if code.strip())

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(s.description for s in self.signals)


@dataclass
class Record:
    """A record in memory: float32 signal in mV, leads in `STANDARD_LEADS` order."""

    record_id: str
    signal: np.ndarray
    fs: float
    age: float | None = None
    sex: str | None = None
    codes: tuple[str, ...] = ()
    leads: tuple[str, ...] = field(default=STANDARD_LEADS)


def normalise_sex(value: object) -> str | None:
    """'Male'/'M'/0 -> 'male'; 'Female'/'F'/1 -> 'female' (PTB-XL codes 0 male, 1 female)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in {"male", "m", "0", "0.0"}:
        return "male"
    if text in {"female", "f", "1", "1.0"}:
        return "female"
    return None


def _parse_float(token: str, what: str, path: Path) -> float:
    try:
        value = float(token)
    except ValueError:
        raise RecordError(f"{path}: cannot parse {what} {token!r}") from None
    if not np.isfinite(value):
        raise RecordError(f"{path}: {what} {token!r} is not a finite number")
    return value


def _parse_int(token: str, what: str, path: Path, low: int, high: int) -> int:
    """An integer field (plain digits, optional sign) within [low, high]."""
    if not re.fullmatch(r"[-+]?\d{1,12}", token):
        raise RecordError(f"{path}: cannot parse {what} {token!r} as an integer")
    value = int(token)
    if not low <= value <= high:
        raise RecordError(f"{path}: {what} {value} outside {low}..{high}")
    return value


_INT32_RANGE = (-(1 << 31), (1 << 31) - 1)


_FORMAT_RE = re.compile(r"(?P<fmt>\d+)(?:x(?P<spf>\d{1,6}))?(?::(?P<skew>\d{1,9}))?(?:\+(?P<offset>\S+))?")
_GAIN_RE = re.compile(r"^(?P<gain>[-+0-9.eE]+)(?:\((?P<baseline>[-+0-9]+)\))?(?:/(?P<units>.+))?$")


def _parse_signal_line(tokens: list[str], path: Path) -> SignalSpec:
    if len(tokens) < 2:
        raise RecordError(f"{path}: malformed signal line {' '.join(tokens)!r}")
    file_name, fmt_token = tokens[0], tokens[1]
    match = _FORMAT_RE.fullmatch(fmt_token)
    if not match:
        raise RecordError(f"{path}: cannot parse format {fmt_token!r}")
    fmt = match["fmt"]
    if fmt not in FORMAT_BITS:
        raise RecordError(f"{path}: unsupported WFDB format {fmt!r}")
    if match["spf"] is not None and int(match["spf"]) != 1:
        raise RecordError(f"{path}: {match['spf']} samples per frame are not supported")
    has_skew = match["skew"] is not None and int(match["skew"]) != 0
    byte_offset = _parse_int(match["offset"], "byte offset", path, 0, 1 << 30) if match["offset"] else 0
    gain, baseline, units = _WFDB_DEFAULT_GAIN, None, "mV"
    if len(tokens) > 2:
        match = _GAIN_RE.match(tokens[2])
        if not match:
            raise RecordError(f"{path}: cannot parse gain {tokens[2]!r}")
        gain = _parse_float(match["gain"], "gain", path) or _WFDB_DEFAULT_GAIN
        baseline = _parse_int(match["baseline"], "baseline", path, *_INT32_RANGE) if match["baseline"] else None
        units = match["units"] or "mV"
    # Fields we do not use are still validated: a malformed one means the line is not what it seems (wfdb's
    # parser then shifts fields silently).
    if len(tokens) > 3:
        _parse_int(tokens[3], "ADC resolution", path, 0, 64)
    adc_zero = _parse_int(tokens[4], "ADC zero", path, *_INT32_RANGE) if len(tokens) > 4 else 0
    for position, what in ((5, "initial value"), (6, "checksum"), (7, "block size")):
        if len(tokens) > position:
            _parse_int(tokens[position], what, path, *_INT32_RANGE)
    # Fields after the checksum: block size, then the free-text description (the lead name).
    description = " ".join(tokens[8:]) if len(tokens) > 8 else ""
    return SignalSpec(
        file_name=file_name,
        fmt=fmt,
        byte_offset=byte_offset,
        has_skew=has_skew,
        gain=gain,
        baseline=adc_zero if baseline is None else baseline,
        units=units,
        description=description.strip(),
    )


def parse_header(path: str | os.PathLike) -> Header:
    """Parse a `.hea` file. Accepts `E00009.mat 12 500 5000` record lines (CinC 2020) that wfdb rejects."""
    path = Path(path)
    text = read_regular_file(path, MAX_HEADER_BYTES, "header", RecordError).decode("latin-1")
    lines = [line.strip() for line in text.splitlines()]
    comments = tuple(line.lstrip("#").strip() for line in lines if line.startswith("#"))
    content = [line for line in lines if line and not line.startswith("#")]
    if not content:
        raise RecordError(f"{path}: empty header")
    record_tokens = content[0].split()
    if len(record_tokens) < 3:
        raise RecordError(f"{path}: malformed record line {content[0]!r}")
    record_name = record_tokens[0]
    if "/" in record_name:
        raise RecordError(f"{path}: multi-segment records are not supported")
    record_name = re.sub(r"\.(mat|dat|hea)$", "", record_name)
    n_signals = _parse_int(record_tokens[1], "signal count", path, 1, MAX_SIGNALS)
    fs = _parse_float(record_tokens[2].split("/")[0].split("(")[0], "sampling frequency", path)
    if not FS_RANGE[0] <= fs <= FS_RANGE[1]:
        raise RecordError(f"{path}: sampling frequency {fs:g} Hz outside {FS_RANGE[0]:g}..{FS_RANGE[1]:g} Hz")
    if len(record_tokens) < 4:
        raise RecordError(f"{path}: header gives no sample count")
    n_samples = _parse_int(record_tokens[3], "sample count", path, 1, MAX_SAMPLES)
    signal_lines = content[1:]
    if len(signal_lines) != n_signals:
        raise RecordError(f"{path}: header declares {n_signals} signals but describes {len(signal_lines)}")
    signals = tuple(_parse_signal_line(line.split(), path) for line in signal_lines)
    return Header(path, record_name, fs, n_samples, signals, comments)


def lead_order(header: Header) -> np.ndarray:
    """Indices that put the header's signals in `STANDARD_LEADS` order (names matched case-insensitively)."""
    positions: dict[str, int] = {}
    for i, spec in enumerate(header.signals):
        lead = LEAD_BY_UPPER.get(spec.description.upper())
        if lead is None:
            raise RecordError(f"{header.path}: unknown lead name {spec.description!r}")
        if lead in positions:
            raise RecordError(f"{header.path}: lead {lead} appears twice")
        positions[lead] = i
    missing = [lead for lead in STANDARD_LEADS if lead not in positions]
    if missing:
        raise RecordError(f"{header.path}: missing leads {', '.join(missing)}")
    return np.array([positions[lead] for lead in STANDARD_LEADS])


def _read_mat_v4(path: Path, n_signals: int, n_samples: int) -> tuple[np.ndarray, int] | None:
    """Digital [samples, signals] from a MAT v4 int16 file and the byte offset of its data, or None when the
    file is another MAT flavour."""
    with open(path, "rb") as handle:
        head = handle.read(_MAT_V4_HEADER_BYTES)
        if len(head) < _MAT_V4_HEADER_BYTES:
            return None
        mopt, rows, cols, imag, name_len = np.frombuffer(head, dtype="<i4")
        if mopt != _MAT_V4_INT16_LE or imag != 0 or not 0 < name_len < 64:
            return None
        name = handle.read(int(name_len))
    if name != b"val\0":
        raise RecordError(f"{path}: MAT file has no 'val' variable (found {name.rstrip(bytes(1)).decode('latin-1')!r})")
    if (rows, cols) != (n_signals, n_samples):
        raise RecordError(
            f"{path}: header/payload size mismatch: header says {n_signals}x{n_samples}, matrix is {rows}x{cols}"
        )
    data_offset = _MAT_V4_HEADER_BYTES + int(name_len)
    _check_payload_size(path, data_offset + 2 * n_signals * n_samples)
    # MAT stores column-major: column j holds all signals at sample j, i.e. the WFDB interleaving.
    return np.fromfile(path, dtype="<i2", offset=data_offset).reshape(n_samples, n_signals), data_offset


def _read_mat_any(path: Path, n_signals: int, n_samples: int) -> np.ndarray:
    """Other MAT flavours through scipy; the variable's shape is checked (`whosmat` reads headers only)
    before its data is loaded, so a lying or compressed file cannot make us allocate more than the header says."""
    import scipy.io

    if path.stat().st_size > 8 * n_signals * n_samples + (1 << 16):
        raise RecordError(f"{path}: MAT file is larger than a {n_signals}x{n_samples} matrix can be")
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
        if "val" not in shapes:
            raise RecordError(f"{path}: MAT file has no 'val' variable")
        if tuple(shapes["val"]) != (n_signals, n_samples):
            raise RecordError(
                f"{path}: header/payload size mismatch: header says {n_signals}x{n_samples}, "
                f"'val' is {'x'.join(map(str, shapes['val']))}"
            )
        matrix = np.asarray(scipy.io.loadmat(path, variable_names=["val"])["val"])
    except RecordError:
        raise
    except Exception as exc:  # scipy raises several types for corrupt files
        raise RecordError(f"{path}: unreadable MAT file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if matrix.shape != (n_signals, n_samples) or not np.issubdtype(matrix.dtype, np.number) \
            or np.iscomplexobj(matrix):
        raise RecordError(f"{path}: MAT variable 'val' is not a real {n_signals}x{n_samples} matrix")
    return matrix.T


def _check_payload_size(path: Path, expected: int, slack: int = 0) -> None:
    actual = path.stat().st_size
    if actual == 0:
        raise RecordError(f"{path}: empty payload file")
    if actual < expected:
        raise RecordError(f"{path}: truncated payload: {actual} bytes, header implies {expected}")
    if actual > expected + slack:
        raise RecordError(f"{path}: header/payload size mismatch: {actual} bytes, header implies {expected}")


def payload_path(header: Header, file_name: str, root: Path | None = None) -> Path:
    """The payload file a header names: a plain file name beside the header, resolving (symlinks followed)
    to a regular file inside `root` (default: the header's folder)."""
    if not file_name or file_name in (".", "..") or "/" in file_name or "\\" in file_name or "\0" in file_name:
        raise RecordError(f"{header.path}: payload file name {file_name!r} is not a plain file name")
    path = header.path.parent / file_name
    boundary = Path(root if root is not None else header.path.parent).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(boundary):
        raise RecordError(f"{header.path}: payload file {file_name!r} lies outside the dataset folder")
    if not resolved.exists():
        raise RecordError(f"{path}: payload file not found")
    if not resolved.is_file():
        raise RecordError(f"{path}: payload is not a regular file")
    return path


def _read_digital(header: Header, root: Path | None = None) -> np.ndarray:
    """Digital samples as [samples, signals], by the fastest path the files allow."""
    first = header.signals[0]
    payloads = {name: payload_path(header, name, root) for name in dict.fromkeys(s.file_name for s in header.signals)}
    payload = payloads[first.file_name]
    if payload.stat().st_size == 0:
        raise RecordError(f"{payload}: empty payload file")
    single_file = len(payloads) == 1
    if payload.suffix.lower() == ".mat" and single_file:
        mat_v4 = _read_mat_v4(payload, len(header.signals), header.n_samples)
        # The header must describe the MAT layout (int16 samples, interleaved, at the data offset): a header
        # that says otherwise disagrees with its payload, and guessing which one is right is not our call.
        expected_offset = mat_v4[1] if mat_v4 is not None else None
        for spec in header.signals:
            if spec.fmt != "16" or spec.has_skew or expected_offset not in (None, spec.byte_offset):
                layout = f"16+{expected_offset}" if expected_offset is not None else "16"
                raise RecordError(f"{header.path}: signal {spec.description or '?'} is stored as format "
                                  f"{spec.fmt}+{spec.byte_offset}{' with skew' if spec.has_skew else ''}, "
                                  f"which does not match the MAT file's layout ({layout})")
        return mat_v4[0] if mat_v4 is not None else _read_mat_any(payload, len(header.signals), header.n_samples)
    simple_fmt16 = single_file and all(
        s.fmt == "16" and not s.has_skew and s.byte_offset == first.byte_offset for s in header.signals
    )
    if simple_fmt16:
        n = len(header.signals)
        _check_payload_size(payload, first.byte_offset + 2 * n * header.n_samples)
        return np.fromfile(payload, dtype="<i2", offset=first.byte_offset).reshape(header.n_samples, n)
    for name, path in payloads.items():  # wfdb allocates from the header: check every file's size first
        specs = [s for s in header.signals if s.file_name == name]
        if len({s.fmt for s in specs}) != 1:
            raise RecordError(f"{path}: signals of one file in different formats are not supported")
        bits = FORMAT_BITS[specs[0].fmt] * len(specs) * header.n_samples
        _check_payload_size(path, specs[0].byte_offset + int(np.ceil(bits / 8)), slack=4)
    return _read_digital_with_wfdb(header)


def _read_digital_with_wfdb(header: Header) -> np.ndarray:
    import wfdb

    try:
        record = wfdb.rdrecord(str(header.path.with_suffix("")), physical=False)
    except Exception as exc:  # wfdb raises bare ValueErrors/IndexErrors for corrupt files
        raise RecordError(f"{header.path}: wfdb cannot read record ({type(exc).__name__}: {str(exc)[:200]})") from None
    digital = np.asarray(record.d_signal)
    if digital.shape != (header.n_samples, len(header.signals)):
        raise RecordError(f"{header.path}: wfdb read {digital.shape} samples x signals, header says "
                          f"{header.n_samples} x {len(header.signals)}")
    return digital


def read_signal(header: Header, gain_errata: Mapping[float, float] | None = None,
                root: Path | None = None) -> np.ndarray:
    """Physical signal in mV, float32 [12 leads, samples], leads in `STANDARD_LEADS` order.

    `gain_errata` maps a gain that a header states wrongly to the true one (CinC 2020's 4880/mV); payloads must
    lie inside `root` (the dataset folder; default: the header's folder).
    """
    order = lead_order(header)
    digital = _read_digital(header, root)[:, order]
    specs = [header.signals[i] for i in order]
    gains = []
    for spec in specs:
        gain = (gain_errata or {}).get(spec.gain, spec.gain)
        scale = _UNIT_TO_MV.get(spec.units.lower())
        if scale is None:
            raise RecordError(f"{header.path}: unsupported unit {spec.units!r}")
        gains.append(gain / scale)
    baseline = np.array([spec.baseline for spec in specs], dtype=np.float64)
    with np.errstate(all="ignore"):  # overflow to inf is caught just below
        physical = (digital.astype(np.float64) - baseline) / np.array(gains)
    physical[digital == _FMT16_INVALID] = np.nan
    if not np.isfinite(physical).all():
        raise RecordError(f"{header.path}: signal contains NaN or invalid samples")
    largest = float(np.abs(physical).max(initial=0.0))
    if largest > MAX_ABS_MV:
        raise RecordError(f"{header.path}: amplitudes up to {largest:.3g} mV are physically absurd (more than "
                          f"{MAX_ABS_MV:g} mV): a wrong gain or unit in the header")
    return np.ascontiguousarray(physical.T, dtype=np.float32)


def read_record(
    header_path: str | os.PathLike,
    record_id: str | None = None,
    gain_errata: Mapping[float, float] | None = None,
    root: Path | None = None,
) -> Record:
    """Read one record (header + payload) into a `Record`."""
    header = parse_header(header_path)
    signal = read_signal(header, gain_errata, root)
    return Record(
        record_id=record_id or header.record_name,
        signal=signal,
        fs=header.fs,
        age=header.age,
        sex=header.sex,
        codes=header.dx_codes,
    )


def write_format16(folder: str | os.PathLike, name: str, signal_mv: np.ndarray, fs: float,
                   leads: tuple[str, ...] = STANDARD_LEADS, gain: float = 1000.0,
                   comments: tuple[str, ...] = ()) -> Path:
    """Write a WFDB format-16 record (`name.hea` + `name.dat`) directly; ~50x faster than `wfdb.wrsamp`.

    `signal_mv` is [leads, samples] in mV; digital = round(mV * gain), clipped to int16 (never -32768,
    which WFDB reserves for invalid samples). Checksums are written as wfdb does, so wfdb reads it back.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(np.asarray(signal_mv, dtype=np.float64) * gain), -32767, 32767).astype("<i2")
    n_leads, n_samples = digital.shape
    digital.T.tofile(folder / f"{name}.dat")
    checksums = (digital.astype(np.int64).sum(axis=1) + 32768) % 65536 - 32768
    lines = [f"{name} {n_leads} {fs:g} {n_samples}"]
    for lead, first, checksum in zip(leads, digital[:, 0], checksums, strict=True):
        lines.append(f"{name}.dat 16 {gain:g}/mV 16 0 {int(first)} {int(checksum)} 0 {lead}")
    lines += [f"# {comment}" for comment in comments]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"
