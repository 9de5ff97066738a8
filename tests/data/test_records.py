"""The fast reader: identical to wfdb.rdsamp, tolerant of real-file quirks, clear about bad files."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from conftest import digital_ecg, ecg_like, write_cinc, write_wfdb

from ecgtl.data.cinc import CINC_GAIN_ERRATA
from ecgtl.data.records import STANDARD_LEADS, lead_order, parse_header, read_record, read_signal
from ecgtl.errors import RecordError


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
    with pytest.raises(RecordError, match="bad.hea: malformed record line"):
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
