"""Synthetic datasets: real layouts read by ecgtl's readers, wfdb and scipy; determinism; prevalence; errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb
from click.testing import CliRunner

from ecgtl.cli import cli
from ecgtl.data.cache import prepare
from ecgtl.data.cinc import CincSource
from ecgtl.data.labels import SHARED18
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.ptbxl import PtbxlSource
from ecgtl.data.records import parse_header, read_signal
from ecgtl.data.sources import open_source
from ecgtl.data.spec import parse_spec
from ecgtl.data.synthetic import SynthConfig, generate
from ecgtl.data.synthetic_labels import FULL_SIZE, PUBLISHED_COUNTS, sample_labels
from ecgtl.errors import DatasetError
from ecgtl.inputs import STANDARD_LEADS


@pytest.fixture(scope="module")
def g12ec(tmp_path_factory):
    return generate(SynthConfig(like="g12ec", n=120, seed=3), tmp_path_factory.mktemp("syn") / "g12ec", progress=False)


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory):
    return generate(SynthConfig(like="ptbxl", n=120, seed=3, rates=(100, 500)),
                    tmp_path_factory.mktemp("syn") / "ptbxl", progress=False)


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_g12ec_layout_reads_with_ecgtl_wfdb_and_scipy(g12ec):
    source = CincSource(g12ec)
    assert len(source.index) == 120 and not source.problems
    header = next(g12ec.rglob("E00001.hea"))
    assert header.parent.name == "g1"
    parsed = parse_header(header)
    assert parsed.fs == 500 and parsed.n_samples == 5000 and parsed.signals[0].fmt == "16"
    matrix = scipy.io.loadmat(header.with_suffix(".mat"))["val"]
    assert matrix.dtype == np.int16 and matrix.shape == (12, 5000)
    ours = read_signal(parsed)
    np.testing.assert_array_equal(ours, (matrix / 1000.0).astype(np.float32))
    theirs, fields = wfdb.rdsamp(str(header.with_suffix("")))
    np.testing.assert_allclose(ours, theirs.T, atol=1e-6)
    assert fields["sig_name"] == list(STANDARD_LEADS)
    assert all(age is None or 18 <= age <= 95 for age in source.index["age"])


def test_ptbxl_layout_reads_at_both_rates(ptbxl):
    for fs in (100, 500):
        source = PtbxlSource(ptbxl, fs=fs)
        assert len(source.index) == 120 and not source.problems
        header = source.index["header_path"][0]
        signal, fields = wfdb.rdsamp(header[:-4])
        assert fields["fs"] == fs and signal.shape == (10 * fs, 12)
    database = pd.read_csv(ptbxl / "ptbxl_database.csv")
    # Folds are assigned per patient: no patient crosses folds.
    assert database.groupby("patient_id")["strat_fold"].nunique().max() == 1
    assert set(database["strat_fold"]) <= set(range(1, 11))
    labels, classes = PtbxlSource(ptbxl).label_matrix("ptbxl-superdiagnostic")
    assert "NORM" in classes and labels.sum() > 0


def test_limb_lead_identities_hold_to_within_quantisation(g12ec):
    signal = read_signal(parse_header(next(g12ec.rglob("E00007.hea"))))
    lead = {name: signal[i] for i, name in enumerate(STANDARD_LEADS)}
    step = 1 / 1000  # one quantisation step at 1000/mV
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 1.5 * step
    assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() <= 1.5 * step
    assert np.abs(lead["aVL"] - (lead["I"] - lead["II"] / 2)).max() <= 1.5 * step
    assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= 1.5 * step


def test_same_seed_gives_identical_bytes_and_worker_count_does_not_matter(tmp_path):
    config = SynthConfig(like="g12ec", n=60, seed=5)
    one = generate(config, tmp_path / "a", workers=1, progress=False)
    two = generate(config, tmp_path / "b", workers=2, progress=False)
    other = generate(SynthConfig(like="g12ec", n=60, seed=6), tmp_path / "c", progress=False)
    assert _digest(one) == _digest(two) != _digest(other)


def test_prevalence_follows_the_published_counts():
    n = 40_000
    for layout, column in (("ptbxl", 0), ("g12ec", 1)):
        labels, _ = sample_labels(n, layout, np.random.default_rng(0))
        for j, name in enumerate(SHARED18):
            expected = PUBLISHED_COUNTS[name][column] / FULL_SIZE[layout]
            standard_error = np.sqrt(expected * (1 - expected) / n)
            assert abs(labels[:, j].mean() - expected) < 4 * standard_error + 1e-4, (layout, name)


def test_inspect_counts_match_the_generated_labels_and_georgia_codes_rbbb_generically(g12ec):
    truth = pd.read_csv(g12ec / "synthetic_truth.csv", dtype={"record_id": str}).fillna("")
    expected = {name: int(truth["labels"].str.split().map(lambda labels, n=name: n in labels).sum()) for name in SHARED18}
    result = CliRunner().invoke(cli, ["data", "inspect", str(g12ec)])
    assert result.exit_code == 0
    for name, count in expected.items():
        assert f"  {name:<7}  {count:>6}" in result.output
    codes = [c for codes in CincSource(g12ec).index["codes"] for c in codes]
    if expected["CRBBB"] >= 3:
        assert codes.count("59118001") > codes.count("713427006")


def test_ground_truth_sidecar_and_marker(g12ec):
    truth = pd.read_csv(g12ec / "synthetic_truth.csv")
    assert {"record_id", "pr_ms", "qrs_ms", "qtc_ms", "axis_deg", "severities"} <= set(truth.columns)
    assert len(truth) == 120 and truth["hr_bpm"].between(45, 120).all()
    marker = json.loads((g12ec / "synthetic.json").read_text())
    assert marker["n"] == 120 and marker["like"] == "g12ec"


def test_synthetic_spec_generates_once_and_prepares(tmp_path):
    spec = "synthetic:g12ec?n=40&seed=1"
    source = open_source(spec)
    folder = source.root
    stamp = (folder / "synthetic.json").stat().st_mtime_ns
    assert open_source(spec).root == folder and (folder / "synthetic.json").stat().st_mtime_ns == stamp
    prepared = prepare(PrepareConfig(spec=spec), progress=False)
    assert sum(prepared.manifest["counts"].values()) == 40
    assert parse_spec("synthetic:ptbxl?seed=0&n=10") == parse_spec("synthetic:ptbxl?n=10&seed=0")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SynthConfig(like="mitdb", n=10), "synthetic layout must be one of ptbxl, g12ec; got 'mitdb'"),
        (SynthConfig(like="g12ec", n=0), "n must lie in 1..100000 records"),
        (SynthConfig(like="ptbxl", n=5, rates=(250,)), "rates must be 100 and/or 500"),
    ],
)
def test_bad_parameters_are_clear_errors(tmp_path, config, message):
    with pytest.raises(DatasetError, match=message):
        generate(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_existing_unrelated_out_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = CliRunner().invoke(cli, ["data", "synth", "--like", "g12ec", "--n", "5", "--out", str(out)])
    assert result.exit_code == 2 and "exists and is not a synthetic dataset" in result.output
    assert (out / "thesis.tex").read_text() == "precious" and len(list(out.iterdir())) == 1
    generate(SynthConfig(like="g12ec", n=5, seed=0), tmp_path / "syn", progress=False)
    with pytest.raises(DatasetError, match="exists and is not a synthetic dataset with these parameters"):
        generate(SynthConfig(like="g12ec", n=6, seed=0), tmp_path / "syn", progress=False)
    # Same parameters: reused, not rewritten.
    assert generate(SynthConfig(like="g12ec", n=5, seed=0), tmp_path / "syn", progress=False) == tmp_path / "syn"


def test_cli_synth_and_unknown_like(tmp_path):
    ok = CliRunner().invoke(cli, ["data", "synth", "--like", "ptbxl", "--n", "12", "--out", str(tmp_path / "p")])
    assert ok.exit_code == 0 and (tmp_path / "p" / "ptbxl_database.csv").exists()
    bad = CliRunner().invoke(cli, ["data", "synth", "--like", "nope", "--n", "12", "--out", str(tmp_path / "q")])
    assert bad.exit_code == 2 and "synthetic layout must be one of ptbxl, g12ec; got 'nope'" in bad.output


def test_plot_record_and_gallery_html_is_self_contained(g12ec, tmp_path):
    result = CliRunner().invoke(cli, ["data", "plot", str(g12ec), "--record", "E00003", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "plotly.js" in html.lower() or "Plotly" in html
    assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000  # plotly.js embedded: renders offline
    gallery = CliRunner().invoke(cli, ["data", "plot", str(g12ec), "--gallery", "--out", str(tmp_path / "g.html")])
    assert gallery.exit_code == 0
    missing = CliRunner().invoke(cli, ["data", "plot", str(g12ec), "--record", "E99999", "--out", str(tmp_path / "x.html")])
    assert missing.exit_code == 2 and "record 'E99999' is not in" in missing.output


def test_plot_real_record(shared_samples, tmp_path):
    header = shared_samples / "cinc2021-smoke" / "PTB_PTBXL" / "S0001.hea"
    result = CliRunner().invoke(cli, ["data", "plot", str(header), "--out", str(tmp_path / "s.html")])
    assert result.exit_code == 0 and (tmp_path / "s.html").stat().st_size > 1_000_000


@pytest.mark.slow
def test_full_size_georgia_generates_and_reads(tmp_path):
    folder = generate(SynthConfig(like="g12ec", n=FULL_SIZE["g12ec"], seed=0), tmp_path / "full", progress=False)
    source = CincSource(folder)
    assert len(source.index) == 10344 and not source.problems
    assert len(list(folder.glob("g*"))) == 11  # 1 000 records per subfolder, as in the challenge release
    labels, _ = source.label_matrix("shared18")
    crbbb = labels[:, SHARED18.index("CRBBB")].mean()
    assert abs(crbbb - 570 / 10344) < 4 * np.sqrt(crbbb * (1 - crbbb) / 10344)


def _signals_at_100hz(folder, like):
    from ecgtl.data.signal import resample

    source = open_source(f"{'ptbxl' if like == 'ptbxl' else 'cinc'}:{folder}")
    headers = [parse_header(p) for p in source.index["header_path"]]
    return np.stack([resample(read_signal(h), h.fs, 100) for h in headers])


def test_source_and_target_domains_share_no_random_stream(tmp_path):
    """Same seed, both layouts (as the default specs): no Georgia record is a copy of a PTB-XL record.

    With streams keyed by (seed, index) only, about one in five Georgia records had a same-index PTB-XL twin
    (r > 0.9); 200 records of each catch that with certainty.
    """
    n = 200
    source = _signals_at_100hz(generate(SynthConfig(like="ptbxl", n=n, seed=0), tmp_path / "p", progress=False), "ptbxl")
    target = _signals_at_100hz(generate(SynthConfig(like="g12ec", n=n, seed=0), tmp_path / "g", progress=False), "g12ec")

    def standardised(x):
        flat = x.reshape(len(x), -1).astype(np.float64)
        flat -= flat.mean(axis=1, keepdims=True)
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)

    correlation = standardised(target) @ standardised(source).T  # [target, source] Pearson r
    assert correlation.max() < 0.8, f"max r {correlation.max():.3f} at {np.unravel_index(correlation.argmax(), correlation.shape)}"
