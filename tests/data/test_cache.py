"""The preprocessed cache: content, reuse, key changes, atomic writes, skipped records, strict mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import digital_ecg, write_cinc

from ecgtl.data import cache as cache_module
from ecgtl.data.cache import prepare
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.records import parse_header, read_signal
from ecgtl.data.signal import crop_or_pad, resample
from ecgtl.errors import DatasetError, RecordError


def test_prepare_cinc_writes_resampled_splits(cinc_folder, tmp_path):
    prepared = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}", fs=100), cache_dir=tmp_path / "c", progress=False)
    counts = prepared.manifest["counts"]
    assert sum(counts.values()) == 24 and all(counts[name] > 0 for name in ("train", "val", "test"))
    train = prepared.split("train")
    assert train.signals.shape == (counts["train"], 12, 1000) and train.signals.dtype == np.float32
    assert isinstance(train.signals, np.memmap)
    assert train.labels.shape == (counts["train"], 18)
    # Row r of the array is the record named in row r of the index, resampled 500 -> 100 Hz.
    record_id = train.index["record_id"][0]
    header = next(cinc_folder.rglob(f"{record_id}.hea"))
    expected = resample(read_signal(parse_header(header)), 500, 100)
    np.testing.assert_allclose(train.signals[0], expected, atol=1e-6)
    # Labels follow the record's #Dx (equivalences merge 59118001 into CRBBB).
    crbbb = prepared.classes.index("CRBBB")
    rbbb_ids = {p.stem for p in cinc_folder.rglob("*.hea") if "59118001" in p.read_text() or "713427006" in p.read_text()}
    all_ids = np.concatenate([prepared.split(s).index["record_id"] for s in ("train", "val", "test")])
    all_labels = np.concatenate([prepared.split(s).labels for s in ("train", "val", "test")])
    assert set(all_ids[all_labels[:, crbbb] == 1]) == rbbb_ids


def test_resample_keeps_frequency_content():
    fs_in, fs_out = 500, 100
    t = np.arange(5000) / fs_in
    signal = np.sin(2 * np.pi * 5 * t)[None].astype(np.float32)
    out = resample(signal, fs_in, fs_out)
    assert out.shape == (1, 1000)
    spectrum = np.abs(np.fft.rfft(out[0]))
    assert np.argmax(spectrum) == 50  # 5 Hz at 0.1 Hz resolution


def test_crop_is_centred_and_pad_is_at_the_end():
    signal = np.arange(10, dtype=np.float32)[None]
    cropped, valid = crop_or_pad(signal, 4)
    assert cropped.tolist() == [[3, 4, 5, 6]] and valid == 4
    padded, valid = crop_or_pad(signal, 12)
    assert padded.tolist() == [list(range(10)) + [0, 0]] and valid == 10


def test_unchanged_inputs_reuse_the_cache_and_changed_inputs_do_not(cinc_folder, tmp_path):
    config = PrepareConfig(spec=f"cinc:{cinc_folder}", fs=100)
    first = prepare(config, cache_dir=tmp_path, progress=False)
    stamp = (first.path / "train.npy").stat().st_mtime_ns
    again = prepare(config, cache_dir=tmp_path, progress=False)
    assert again.path == first.path and (again.path / "train.npy").stat().st_mtime_ns == stamp
    other_fs = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}", fs=50), cache_dir=tmp_path, progress=False)
    other_seed = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}", fs=100, split_seed=1), cache_dir=tmp_path,
                         progress=False)
    assert len({first.path, other_fs.path, other_seed.path}) == 3
    assert other_fs.split("train").signals.shape[-1] == 500
    # Changing the data itself (a record added) also makes a new cache.
    write_cinc(cinc_folder / "g1", "E09999", digital_ecg(seed=99))
    with pytest.raises(DatasetError, match=r"splits?.*\.csv: the stored split lists other records than the dataset"):
        prepare(config, cache_dir=tmp_path, progress=False)


def test_skipped_records_are_listed_in_the_manifest_and_strict_fails(cinc_folder, tmp_path):
    mat = next(cinc_folder.rglob("E00003.mat"))
    mat.write_bytes(mat.read_bytes()[:1000])
    (cinc_folder / "g1" / "X1.hea").write_text("garbage\n")
    prepared = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=tmp_path / "a", progress=False)
    reasons = [p["reason"] for p in prepared.manifest["problems"]]
    assert any("E00003.mat: truncated payload" in r for r in reasons)
    assert any("X1.hea: malformed record line" in r for r in reasons)
    assert sum(prepared.manifest["counts"].values()) == 23
    ids = np.concatenate([prepared.split(s).index["record_id"] for s in ("train", "val", "test")])
    assert "E00003" not in set(ids)
    for name in ("train", "val", "test"):
        split = prepared.split(name)
        assert len(split.signals) == len(split.labels) == len(split.index)
        assert np.abs(np.asarray(split.signals)).sum(axis=(1, 2)).min() > 0  # no empty rows left behind
    with pytest.raises(RecordError, match="X1.hea: malformed record line"):
        prepare(PrepareConfig(spec=f"cinc:{cinc_folder}", fs=50), cache_dir=tmp_path / "b", strict=True,
                progress=False)


def test_interrupted_prepare_leaves_no_loadable_cache(cinc_folder, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(cache_module, "_write_splits", explode)
    with pytest.raises(KeyboardInterrupt):
        prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=cache_dir, progress=False)
    assert [p.name for p in cache_dir.iterdir() if p.name != "splits"] == []
    monkeypatch.undo()
    prepared = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=cache_dir, progress=False)
    assert json.loads((prepared.path / "manifest.json").read_text())["counts"]["train"] > 0


def test_parallel_and_serial_prepare_agree(cinc_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "_IN_PROCESS_BELOW", 0)
    monkeypatch.setattr(cache_module, "_CHUNK", 5)
    parallel = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=tmp_path / "p", workers=2, progress=False)
    serial = prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=tmp_path / "s", workers=1, progress=False)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(parallel.split(name).signals, serial.split(name).signals)


def test_ptbxl_prepare_uses_official_folds(ptbxl_folder, tmp_path):
    prepared = prepare(PrepareConfig(spec=f"ptbxl:{ptbxl_folder}"), cache_dir=tmp_path, progress=False)
    # 30 records, folds = id % 10 + 1; record 7 is missing on disk.
    assert prepared.manifest["counts"] == {"train": 23, "val": 3, "test": 3}
    assert [p["record_id"] for p in prepared.manifest["problems"]] == ["7"]
    test_ids = set(prepared.split("test").index["record_id"])
    assert test_ids == {"9", "19", "29"}
    superdiag = prepare(PrepareConfig(spec=f"ptbxl:{ptbxl_folder}", label_set="ptbxl-superdiagnostic"),
                        cache_dir=tmp_path, progress=False)
    assert superdiag.classes == ("CD", "HYP", "MI", "NORM", "STTC")


@pytest.mark.parametrize(("fs_in", "fs_out", "n_in"), [(500, 100, 5000), (1000, 100, 115_200), (257, 100, 46_260),
                                                       (100, 500, 1000), (360, 250, 21_600), (500, 100, 60_001)])
def test_resampling_only_the_centre_window_equals_resampling_everything(fs_in, fs_out, n_in):
    from ecgtl.data.signal import crop_or_pad, resample, resample_centre

    signal = np.random.default_rng(0).standard_normal((12, n_in)).astype(np.float32)
    n_out = 10 * fs_out
    windowed, valid = resample_centre(signal, fs_in, fs_out, n_out)
    reference, valid_reference = crop_or_pad(resample(signal, fs_in, fs_out), n_out)
    assert valid == valid_reference
    np.testing.assert_allclose(windowed, reference, atol=1e-6)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_folder(cinc_folder, tmp_path, monkeypatch):
    """Memory-mapped writes on a full disk used to die of SIGBUS and leave `.tmp-*` behind; the blocks are now
    reserved first, so a full disk is an ENOSPC before any record is read."""
    import errno
    import os

    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig
    from ecgtl.errors import DatasetError

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match="no space left on the device for the cache of cinc"):
        prepare(PrepareConfig(spec=f"cinc:{cinc_folder}"), cache_dir=root, progress=False)
    assert not list(root.glob(".tmp-*")) and not [p for p in root.iterdir() if p.name not in ("splits",)]


def test_record_fs_brings_records_to_that_rate_first_and_keeps_old_cache_keys(tmp_path):
    """A 50 Hz recording read by a 100 Hz model: nothing above 25 Hz survives; record_fs=0 keys as before."""
    import hashlib
    import json
    from dataclasses import asdict

    from ecgtl.data.cache import CACHE_FORMAT_VERSION, cache_key, prepare
    from ecgtl.data.prepare_config import PrepareConfig

    spec = "synthetic:g12ec?n=40&seed=1"
    native = prepare(PrepareConfig(spec=spec), cache_dir=tmp_path, progress=False).split("train").signals
    degraded = prepare(PrepareConfig(spec=spec, record_fs=50.0), cache_dir=tmp_path,
                       progress=False).split("train").signals
    assert native.shape == degraded.shape

    def share_above(signals, hz):
        power = np.abs(np.fft.rfft(np.asarray(signals), axis=-1)) ** 2
        return power[..., np.fft.rfftfreq(signals.shape[-1], 1 / 100.0) > hz].sum() / power.sum()

    assert share_above(degraded, 26.0) < 1e-3 < share_above(native, 26.0)
    old = {k: v for k, v in asdict(PrepareConfig()).items() if k != "record_fs"}
    payload = {**old, "fingerprint": "f", "format": CACHE_FORMAT_VERSION}
    assert cache_key(PrepareConfig(), "f") == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    assert cache_key(PrepareConfig(record_fs=50.0), "f") != cache_key(PrepareConfig(), "f")
