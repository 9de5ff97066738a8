"""Property-based fuzzing of the record reader (run by test_fuzz_records.py in a memory-limited subprocess).

Seeds are real files (the shared CinC and PTB-XL samples, when a folder is given) and files written here
(wfdb format 16 and 212, MAT v4 and v5). Each case mutates one seed's header and/or payload: numbers
(NaN, inf, 1e400, huge, negative, zero), formats (`16+x`, `16x4`, unknown codes), tokens removed or
replaced, lines dropped or duplicated, truncations and extensions, bytes flipped, other encodings (UTF-16,
BOM, NUL). The property: reading (header, payload, then resampling the centre 10 s to 100 Hz as `prepare`
does) either returns a finite signal equal to what wfdb reads from the same files, or raises `RecordError`
with a one-line message naming the file. Any other exception, a hang or an allocation past the memory limit
fails the case.

    python tests/data/fuzz_records.py --examples 400 --seed 0 [--samples ../shared/ecg-samples] [--memory-mib 768]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import digital_ecg, ecg_like, write_cinc, write_wfdb  # noqa: E402

from ecgtl.data.records import _UNIT_TO_MV, lead_order, parse_header, read_signal
from ecgtl.data.signal import resample_centre  # noqa: E402
from ecgtl.errors import RecordError  # noqa: E402
from ecgtl.inputs import STANDARD_LEADS

HOSTILE_NUMBERS = ["nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "0.001", "0.02", "99999999999999", "1e9",
                   "-32768", "32767", "2147483648", "abc", "", "5000.5", "0x10", "١٢", "500/0", "500(7)"]
HOSTILE_FORMATS = ["16+x", "16+-5", "16+99999999", "16x4", "16:3", "212", "8", "24", "32", "80", "99", "16+24",
                   "310", "516", "x", "16x0", "16x"]


def _seed_records(folder: Path, samples: Path | None) -> list[tuple[Path, list[Path]]]:
    """(header, payload files) of every seed record, copied into `folder`."""
    seeds = []
    made = folder / "made"
    seeds.append(write_wfdb(made, "f16", ecg_like(12, 1000, 100, seed=1), 100))
    wfdb.wrsamp("f212", fs=500, units=["mV"] * 12, sig_name=list(STANDARD_LEADS),
                p_signal=ecg_like(12, 2500, 500, seed=2).T, fmt=["212"] * 12, adc_gain=[200.0] * 12,
                baseline=[0] * 12, write_dir=str(made))
    seeds.append(made / "f212.hea")
    seeds.append(write_cinc(made, "E00001", digital_ecg(seed=3)))
    seeds.append(write_cinc(made, "E00002", digital_ecg(n_samples=2500, seed=4), mat_format="5"))
    if samples is not None and samples.exists():
        real = folder / "real"
        chosen = [samples / "cinc2021-smoke" / "G12EC" / "E00001.hea",
                  samples / "cinc2021-smoke" / "PTB_PTBXL" / "HR00001.hea",
                  samples / "cinc2021-smoke" / "CPSC_CPSC-Extra" / "A0002.hea",
                  samples / "ptbxl-excerpt" / "records100" / "00000" / "00001_lr.hea"]
        for header in chosen:
            if header.exists():
                real.mkdir(exist_ok=True)
                for path in header.parent.glob(header.stem + ".*"):
                    shutil.copy(path, real / path.name)
                seeds.append(real / header.name)
    return [(h, sorted(p for p in h.parent.glob(h.stem + ".*") if p.suffix != ".hea")) for h in seeds]


def _wfdb_physical_mv(header_path: Path) -> np.ndarray | None:
    """wfdb's reading of the same files, in mV and standard lead order; None when wfdb refuses them.

    wfdb takes any payload as raw samples at the header's byte offset, which is right for MAT v4 (`16+24`)
    but not for MAT v5; there the reference is wfdb's header with scipy's matrix.
    """
    try:
        payload = header_path.parent / parse_header(header_path).signals[0].file_name
        if payload.suffix == ".mat" and scipy.io.matlab.matfile_version(payload)[0] == 1:  # MAT v5
            fields = wfdb.rdheader(str(header_path.with_suffix("")))
            digital = np.asarray(scipy.io.loadmat(payload)["val"], dtype=np.float64).T
            signal = (digital - np.array(fields.baseline)) / np.array(fields.adc_gain)
            units = fields.units
        else:
            record = wfdb.rdrecord(str(header_path.with_suffix("")))
            signal, units = np.asarray(record.p_signal, dtype=np.float64), record.units
        scale = np.array([_UNIT_TO_MV[u.lower()] for u in units])
        return (signal * scale).T[lead_order(parse_header(header_path))]
    except Exception:
        return None


def _mutate_header(text: bytes, draw) -> bytes:
    lines = text.decode("latin-1").splitlines()
    kind = draw(st.sampled_from(["token", "token", "token", "drop_line", "dup_line", "truncate", "encoding",
                                 "format", "record_count"]))
    if kind == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-8-sig", "nul"]))
        joined = "\n".join(lines)
        if encoding == "nul":
            position = draw(st.integers(0, len(joined)))
            return (joined[:position] + "\0" + joined[position:]).encode("latin-1")
        return joined.encode(encoding)
    if kind == "truncate":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    content = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    if not content:
        return text
    line_index = draw(st.sampled_from(content))
    if kind == "drop_line":
        del lines[line_index]
    elif kind == "dup_line":
        lines.insert(line_index, lines[line_index])
    else:
        tokens = lines[line_index].split()
        if kind == "format" and line_index != content[0] and len(tokens) > 1:
            position, value = 1, draw(st.sampled_from(HOSTILE_FORMATS))
        elif kind == "record_count":
            line_index, tokens = content[0], lines[content[0]].split()
            position, value = draw(st.integers(1, 3)), draw(st.sampled_from(HOSTILE_NUMBERS))
        else:
            position = draw(st.integers(0, max(len(tokens) - 1, 0)))
            value = draw(st.one_of(st.sampled_from(HOSTILE_NUMBERS + HOSTILE_FORMATS),
                                   st.text(max_size=8).filter(lambda t: "\n" not in t and "\r" not in t)))
        if position < len(tokens):
            tokens[position] = value
        lines[line_index] = " ".join(tokens)
    return ("\n".join(lines) + "\n").encode("latin-1", errors="replace")


def _mutate_payload(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "extend", "flip_head", "flip_any", "empty"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "extend":
        return data + bytes(draw(st.integers(1, 64)))
    if kind == "empty":
        return b""
    limit = min(len(data), 160) if kind == "flip_head" else len(data)
    if limit == 0:
        return data
    position = draw(st.integers(0, limit - 1))
    value = draw(st.integers(0, 255))
    return data[:position] + bytes([value]) + data[position + 1:]


class Tally:
    cases = 0
    read = 0
    problems = 0
    wfdb_refused = 0


def check_case(seeds, workdir: Path, draw) -> None:
    header_path, payloads = draw(st.sampled_from(seeds))
    case = Path(tempfile.mkdtemp(dir=workdir))
    try:
        header = case / header_path.name
        header.write_bytes(header_path.read_bytes())
        for payload in payloads:
            (case / payload.name).write_bytes(payload.read_bytes())
        target = draw(st.sampled_from(["header", "payload", "both"]))
        if target in ("header", "both"):
            header.write_bytes(_mutate_header(header.read_bytes(), draw))
        if target in ("payload", "both") and payloads:
            chosen = case / draw(st.sampled_from(payloads)).name
            chosen.write_bytes(_mutate_payload(chosen.read_bytes(), draw))
        Tally.cases += 1
        try:
            parsed = parse_header(header)
            ours = read_signal(parsed, root=case)
            resampled, _ = resample_centre(ours, parsed.fs, 100.0, 1000)
        except RecordError as exc:
            message = str(exc)
            assert "\n" not in message and str(case) in message, f"not a one-line message naming the file: {message!r}"
            Tally.problems += 1
            return
        assert ours.dtype == np.float32 and ours.shape == (12, parsed.n_samples) and np.isfinite(ours).all()
        assert resampled.shape == (12, 1000) and np.isfinite(resampled).all()
        Tally.read += 1
        theirs = _wfdb_physical_mv(header)
        if theirs is None:  # e.g. CinC-2020 record lines that wfdb rejects: nothing to compare with
            Tally.wfdb_refused += 1
            return
        np.testing.assert_allclose(ours, theirs.astype(np.float32), rtol=1e-6, atol=1e-6,
                                   err_msg=f"values differ from wfdb for {header.read_bytes()[:400]!r}")
    finally:
        shutil.rmtree(case, ignore_errors=True)


def run(examples: int, seed: int, samples: Path | None, memory_mib: int) -> Tally:
    workdir = Path(tempfile.mkdtemp(prefix="ecgtl-fuzz-"))
    try:
        seeds = _seed_records(workdir / "seeds", samples)
        # The limit: what this process has mapped now (Python, numpy, scipy, wfdb) plus `memory_mib`.
        mapped_kib = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0])
        limit = mapped_kib * 1024 + memory_mib * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        @hypothesis_seed(seed)
        @settings(max_examples=examples, deadline=5000, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(st.data())
        def property_holds(data):
            check_case(seeds, workdir, data.draw)

        property_holds()
        return Tally
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=Path, default=None)
    parser.add_argument("--memory-mib", type=int, default=768)
    args = parser.parse_args()
    tally = run(args.examples, args.seed, args.samples, args.memory_mib)
    print(f"fuzz cases {tally.cases}: read {tally.read} (wfdb refused {tally.wfdb_refused}), "
          f"record problems {tally.problems}")


if __name__ == "__main__":
    main()
