"""The fast reader: identical to wfdb.rdsamp, tolerant of real-file quirks, clear about bad files."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from conftest import digital_ecg, ecg_like, write_cinc, write_wfdb

from ecgtl.data.cinc import CINC_GAIN_ERRATA
from ecgtl.data.records import lead_order, parse_header, read_record, read_signal
from ecgtl.errors import RecordError
from ecgtl.inputs import STANDARD_LEADS


def _wfdb_reference(header_path):
    signal, _ = wfdb.rdsamp(str(header_path.with_suffix("")))
    return signal[:, lead_order(parse_header(header_path))].T.astype(np.float32)


def test_format16_values_identical_to_wfdb(tmp_path):
    shuffled = ("V6", "I", "aVR", "II", "V1", "III", "aVL", "V2", "aVF", "V3", "V5", "V4")
    header = write_wfdb(tmp_path, "rec1", ecg_like(12, 1000, 100, seed=1), 100, leads=shuffled)
    signal = read_signal(parse_header(header))
    assert signal.dtype == np.float32 and signal.shape == (12, 1000)
    np.testing.assert_array_equal(signal, _wfdb_reference(header))
    # Leads come back in standard order whatever the file's order.
    raw, fields = wfdb.rdsamp(str(header.with_suffix("")))
    np.testing.assert_allclose(signal[STANDARD_LEADS.index("V6")], raw[:, 0], atol=1e-6)
    assert fields["sig_name"][0] == "V6"


def test_mat_v4_values_identical_to_wfdb(tmp_path):
    header = write_cinc(tmp_path, "E00001", digital_ecg(seed=3))
    np.testing.assert_array_equal(read_signal(parse_header(header)), _wfdb_reference(header))


def test_mat_v5_falls_back_to_scipy(tmp_path):
    digital = digital_ecg(seed=4)
    header = write_cinc(tmp_path, "E00002", digital, mat_format="5")
    np.testing.assert_allclose(read_signal(parse_header(header)), digital / 1000.0, atol=1e-6)


def test_cinc_2020_quirks(tmp_path):
    digital = digital_ecg(seed=5)
    header = write_cinc(tmp_path, "E00009", digital, gain="4880/mV", record_line_name="E00009.mat",
                        dx_key="# Dx:", dx="428750005,39732003")
    parsed = parse_header(header)
    assert parsed.record_name == "E00009"
    assert parsed.dx_codes == ("428750005", "39732003")
    # The stated 4880/mV is wrong: the same digital values are 1000/mV in the 2021 release.
    corrected = read_signal(parsed, CINC_GAIN_ERRATA)
    np.testing.assert_allclose(corrected, digital / 1000.0, atol=1e-6)


def test_lowercase_units_long_1000hz_record_and_no_dx(tmp_path):
    digital = digital_ecg(n_samples=115_200, fs=1000, seed=6)
    header = write_cinc(tmp_path, "S0001", digital, fs=1000, gain="1000/mv", dx=None, age="NaN", sex="Female")
    record = read_record(header)
    assert record.fs == 1000 and record.signal.shape == (12, 115_200)
    assert record.codes == () and record.age is None and record.sex == "female"
    np.testing.assert_allclose(record.signal, digital / 1000.0, atol=1e-6)


def test_uppercase_augmented_leads_are_normalised(tmp_path):
    leads = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    header = write_wfdb(tmp_path, "00001_lr", ecg_like(12, 1000, 100), 100, leads=leads)
    assert read_signal(parse_header(header)).shape == (12, 1000)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated payload"),
        ("extend", "header/payload size mismatch"),
        ("empty", "empty payload file"),
        ("delete", "payload file not found"),
        ("missing_lead", "missing leads V6"),
        ("unknown_lead", "unknown lead name 'X7'"),
        ("nan", "NaN"),
        ("samples", "size mismatch"),
    ],
)
def test_bad_records_raise_one_line_errors_naming_the_file(tmp_path, damage, message):
    digital = digital_ecg(seed=7)
    leads = list(STANDARD_LEADS)
    if damage == "nan":
        digital[3, 100] = -32768
    if damage == "unknown_lead":
        leads[11] = "X7"
    header = write_cinc(tmp_path, "E00100", digital, leads=leads)
    mat = tmp_path / "E00100.mat"
    if damage == "truncate":
        mat.write_bytes(mat.read_bytes()[:-100])
    elif damage == "extend":
        mat.write_bytes(mat.read_bytes() + b"\0\0")
    elif damage == "empty":
        mat.write_bytes(b"")
    elif damage == "delete":
        mat.unlink()
    elif damage == "missing_lead":
        lines = header.read_text().splitlines()
        lines[0] = lines[0].replace(" 12 ", " 11 ")
        header.write_text("\n".join(line for line in lines if not line.endswith(" V6")))
    elif damage == "samples":
        header.write_text(header.read_text().replace(" 5000 ", " 4000 ", 1))
    with pytest.raises(RecordError) as info:
        read_signal(parse_header(header))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "E00100" in text


def test_truncated_format16_dat_is_reported(tmp_path):
    header = write_wfdb(tmp_path, "rec2", ecg_like(12, 1000, 100), 100)
    dat = tmp_path / "rec2.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(RecordError, match="truncated payload"):
        read_signal(parse_header(header))


def test_unparseable_header(tmp_path):
    (tmp_path / "bad.hea").write_text("bad twelve x\n")
    with pytest.raises(RecordError, match="bad.hea: cannot parse signal count"):
        parse_header(tmp_path / "bad.hea")
    (tmp_path / "empty.hea").write_text("")
    with pytest.raises(RecordError, match="empty header"):
        parse_header(tmp_path / "empty.hea")


def test_other_formats_fall_back_to_wfdb(tmp_path):
    signal = ecg_like(12, 1000, 100, seed=9)
    wfdb.wrsamp("rec212", fs=100, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                fmt=["212"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    header = tmp_path / "rec212.hea"
    np.testing.assert_array_equal(read_signal(parse_header(header)), _wfdb_reference(header))


def test_direct_format16_writer_is_read_identically_by_wfdb(tmp_path):
    from ecgtl.data.records import write_format16

    signal = ecg_like(12, 1000, 100, seed=11)
    header = write_format16(tmp_path, "fast", signal, 100, comments=("Age: 50",))
    record = wfdb.rdrecord(str(tmp_path / "fast"))  # wfdb verifies the checksums we wrote
    assert record.fs == 100 and record.sig_name == list(STANDARD_LEADS)
    np.testing.assert_array_equal(read_signal(parse_header(header)), _wfdb_reference(header))
    np.testing.assert_allclose(read_signal(parse_header(header)), signal, atol=0.5e-3 + 1e-7)


# ------------------------------------------------------------------------------------------ hostile headers
def _edit_header(header, record_line=None, signal_token=None):
    """Rewrite the record line, or one token (index, value) of every signal line."""
    lines = header.read_text().splitlines()
    if record_line is not None:
        lines[0] = record_line
    if signal_token is not None:
        index, value = signal_token
        for i in range(1, 13):
            tokens = lines[i].split()
            tokens[index] = value
            lines[i] = " ".join(tokens)
    header.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("record_line", "signal_token", "message"),
    [
        (None, (1, "16+x"), "cannot parse byte offset 'x'"),
        (None, (1, "99"), "unsupported WFDB format '99'"),
        (None, (1, "16x4"), "4 samples per frame"),
        (None, (4, "abc"), "cannot parse ADC zero 'abc'"),
        (None, (2, "nan/mV"), "cannot parse gain 'nan/mV'"),
        (None, (2, "1e400/mV"), "gain '1e400' is not a finite number"),
        ("E00100 12 500 nan", None, "cannot parse sample count 'nan'"),
        ("E00100 12 500 1e400", None, "cannot parse sample count '1e400'"),
        ("E00100 12 500 -5", None, "sample count -5 outside"),
        ("E00100 12 500 99999999999", None, "sample count 99999999999 outside"),
        ("E00100 12 nan 5000", None, "sampling frequency 'nan' is not a finite number"),
        ("E00100 12 inf 5000", None, "sampling frequency 'inf' is not a finite number"),
        ("E00100 12 0.001 5000", None, "sampling frequency 0.001 Hz outside"),
        ("E00100 12 0.02 5000", None, "sampling frequency 0.02 Hz outside"),
        ("E00100 9999 500 5000", None, "signal count 9999 outside"),
    ],
)
def test_hostile_header_fields_are_one_line_record_problems(tmp_path, record_line, signal_token, message):
    header = write_cinc(tmp_path, "E00100", digital_ecg(seed=8))
    _edit_header(header, record_line, signal_token)
    with pytest.raises(RecordError) as info:
        read_signal(parse_header(header))
    assert message in str(info.value) and "E00100.hea" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["../outside/secret.mat", "/etc/passwd", "..", "sub/E.mat"])
def test_payload_outside_the_dataset_folder_is_refused_without_reading_it(tmp_path, name):
    root = tmp_path / "dataset"
    header = write_cinc(root, "E00100", digital_ecg(seed=8))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mat").write_bytes((root / "E00100.mat").read_bytes())  # a valid payload, but not ours
    header.write_text(header.read_text().replace("E00100.mat 16", f"{name} 16"))
    with pytest.raises(RecordError) as info:
        read_signal(parse_header(header), root=root)
    text = str(info.value)
    assert "outside the dataset folder" in text or "not a plain file name" in text
    assert "bytes" not in text  # nothing about the foreign file (its size) is reported


def test_payload_symlink_leaving_the_dataset_is_refused(tmp_path):
    root = tmp_path / "dataset"
    header = write_cinc(root, "E00100", digital_ecg(seed=8))
    (tmp_path / "elsewhere.mat").write_bytes((root / "E00100.mat").read_bytes())
    (root / "E00100.mat").unlink()
    (root / "E00100.mat").symlink_to(tmp_path / "elsewhere.mat")
    with pytest.raises(RecordError, match="outside the dataset folder"):
        read_signal(parse_header(header), root=root)
    # A symlink that stays inside the dataset is fine.
    (root / "store").mkdir()
    (root / "store" / "E00100.mat").write_bytes((tmp_path / "elsewhere.mat").read_bytes())
    (root / "E00100.mat").unlink()
    (root / "E00100.mat").symlink_to(root / "store" / "E00100.mat")
    assert read_signal(parse_header(header), root=root).shape == (12, 5000)


def test_header_that_is_a_device_or_a_fifo_is_refused_at_once(tmp_path):
    import os
    import time

    (tmp_path / "zero.hea").symlink_to("/dev/zero")
    with pytest.raises(RecordError, match="zero.hea: header is not a regular file"):
        parse_header(tmp_path / "zero.hea")
    os.mkfifo(tmp_path / "pipe.hea")
    started = time.monotonic()
    with pytest.raises(RecordError, match="pipe.hea: header is not a regular file"):
        parse_header(tmp_path / "pipe.hea")  # used to block forever waiting for a writer
    assert time.monotonic() - started < 5
    (tmp_path / "huge.hea").write_bytes(b"#" * (2 << 20))
    with pytest.raises(RecordError, match="more than the"):
        parse_header(tmp_path / "huge.hea")


def test_mat_v4_with_another_variable_name_is_a_record_problem(tmp_path):
    digital = digital_ecg(seed=8)
    header = write_cinc(tmp_path, "E00100", digital)
    scipy_io = pytest.importorskip("scipy.io")
    scipy_io.savemat(tmp_path / "E00100.mat", {"ecg": digital}, format="4")
    with pytest.raises(RecordError, match="MAT file has no 'val' variable"):
        read_signal(parse_header(header))
    scipy_io.savemat(tmp_path / "E00100.mat", {"ecg": digital}, format="5")
    with pytest.raises(RecordError, match="MAT file has no 'val' variable"):
        read_signal(parse_header(header))


def test_mat_v5_that_claims_a_larger_matrix_is_refused_before_loading(tmp_path):
    import scipy.io

    header = write_cinc(tmp_path, "E00100", digital_ecg(seed=8))
    scipy.io.savemat(tmp_path / "E00100.mat", {"val": np.zeros((12, 50_000), np.int16)}, format="5",
                     do_compression=True)  # compresses to a few kB: a small file, a big allocation
    with pytest.raises(RecordError, match="header says 12x5000, 'val' is 12x50000"):
        read_signal(parse_header(header))


def test_a_gain_that_makes_amplitudes_absurd_is_a_record_problem(tmp_path):
    """A header with gain 1e-33/mV gave a signal of ~7e36 mV and nine labels at p = 1.000."""
    from ecgtl.data.records import read_record

    header = write_cinc(tmp_path, "E00001", digital_ecg(seed=1), gain="1e-33/mV")
    with pytest.raises(RecordError, match=r"E00001.hea: amplitudes up to .* mV are physically absurd"):
        read_record(header)
