"""Fixtures: every test builds its own files (wfdb-written records, scipy `.mat`, hand-written headers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from ecgtl.inputs import STANDARD_LEADS


def pytest_addoption(parser):
    parser.addoption("--order", choices=("file", "reverse", "shuffle"), default="file",
                     help="Run tests in file order, reversed, or shuffled (seed: --order-seed): no test may "
                          "depend on another having run first.")
    parser.addoption("--order-seed", type=int, default=0)


def pytest_configure(config):
    """Under pytest-xdist every worker process takes its share of the cores for torch (not all of them each)."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    order = config.getoption("--order")
    if order == "reverse":
        items.reverse()
    elif order == "shuffle":
        import random

        random.Random(config.getoption("--order-seed")).shuffle(items)

SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "ecg-samples"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so nothing leaks between tests or into ~/.cache."""
    monkeypatch.setenv("ECGTL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def shared_samples() -> Path:
    if not SHARED_SAMPLES.exists():
        pytest.skip(f"real samples not present at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


def ecg_like(n_leads: int, n_samples: int, fs: float, seed: int = 0) -> np.ndarray:
    """A smooth, ECG-scaled test signal in mV [leads, samples] (beats as Gaussian bumps plus a little noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs
    beats = np.zeros(n_samples)
    for centre in np.arange(0.3, t[-1], 0.8):
        beats += np.exp(-0.5 * ((t - centre) / 0.012) ** 2) - 0.2 * np.exp(-0.5 * ((t - centre - 0.25) / 0.05) ** 2)
    weights = rng.uniform(-1.5, 1.5, size=(n_leads, 1))
    return (weights * beats + 0.02 * rng.standard_normal((n_leads, n_samples))).astype(np.float64)


def write_wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: float, leads=STANDARD_LEADS,
               comments: list[str] | None = None) -> Path:
    """A format-16 WFDB record written by wfdb itself (gain 1000/mV)."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal_mv.T,
                fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
                comments=comments or [], write_dir=str(folder))
    return folder / f"{name}.hea"


def write_cinc(folder: Path, name: str, digital: np.ndarray, fs: int = 500, dx: str | None = "164873001",
               age: str = "60", sex: str = "Male", gain: str = "1000/mV", record_line_name: str | None = None,
               dx_key: str = "#Dx:", leads=STANDARD_LEADS, mat_format: str = "4") -> Path:
    """A CinC record: `.mat` (key `val`, int16 [leads, samples]) via scipy, plus a hand-written header."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": digital.astype(np.int16)}, format=mat_format)
    n_leads, n_samples = digital.shape
    lines = [f"{record_line_name or name} {n_leads} {fs} {n_samples} 05-May-2020 14:50:55"]
    for i, lead in enumerate(leads):
        lines.append(f"{name}.mat 16+24 {gain} 16 0 {int(digital[i, 0])} 0 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}"]
    if dx is not None:
        lines.append(f"{dx_key} {dx}")
    lines += ["#Rx: Unknown", "#Hx: Unknown"]
    header = folder / f"{name}.hea"
    header.write_text("\n".join(lines) + "\n")
    return header


def digital_ecg(n_samples: int = 5000, fs: float = 500, seed: int = 0, n_leads: int = 12) -> np.ndarray:
    return np.round(ecg_like(n_leads, n_samples, fs, seed) * 1000).astype(np.int16)


@pytest.fixture
def cinc_folder(tmp_path) -> Path:
    """A small CinC-layout folder with nested subfolders and 24 readable records of varied labels."""
    root = tmp_path / "cinc"
    codes = ["164873001", "270492004", "59118001", "713427006,164873001", "426783006", "111975006"]
    for i in range(24):
        write_cinc(root / f"g{i % 2 + 1}", f"E{i + 1:05d}", digital_ecg(seed=i), dx=codes[i % len(codes)])
    return root


SCP_STATEMENTS = pd.DataFrame(
    [
        ("NORM", 1.0, None, None, "NORM", "NORM"),
        ("IMI", 1.0, None, None, "MI", "IMI"),
        ("ASMI", 1.0, None, None, "MI", "AMI"),
        ("LVH", 1.0, None, None, "HYP", "LVH"),
        ("NDT", 1.0, 1.0, None, "STTC", "STTC"),
        ("CRBBB", 1.0, None, None, "CD", "CRBBB"),
        ("1AVB", 1.0, None, None, "CD", "_AVB"),
        ("LVOLT", None, 1.0, None, None, None),
        ("SR", None, None, 1.0, None, None),
        ("AFIB", None, None, 1.0, None, None),
    ],
    columns=["code", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"],
).set_index("code")


def write_ptbxl(root: Path, n: int = 30, fs_list=(100,), seed: int = 0, missing: tuple[int, ...] = ()) -> Path:
    """A native PTB-XL folder: database CSV, scp_statements.csv and WFDB records (10 s)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    SCP_STATEMENTS.rename_axis(None).to_csv(root / "scp_statements.csv")
    choices = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0, 'LVH': 100.0, 'SR': 0.0}",
               "{'CRBBB': 100.0, 'AFIB': 0.0}", "{'1AVB': 100.0, 'NDT': 50.0, 'LVOLT': 0.0}"]
    rows = []
    for ecg_id in range(1, n + 1):
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        lr, hr = f"records100/{folder}/{ecg_id:05d}_lr", f"records500/{folder}/{ecg_id:05d}_hr"
        rows.append({
            "ecg_id": ecg_id, "patient_id": float(ecg_id), "age": float(rng.integers(20, 90)),
            "sex": int(rng.integers(0, 2)), "scp_codes": choices[ecg_id % len(choices)],
            "strat_fold": (ecg_id % 10) + 1, "filename_lr": lr, "filename_hr": hr,
        })
        if ecg_id in missing:
            continue
        for fs, name in ((100, lr), (500, hr)):
            if fs in fs_list:
                # PTB-XL names the augmented limb leads in capitals.
                leads = [lead.upper() if lead.startswith("a") else lead for lead in STANDARD_LEADS]
                write_wfdb(root / Path(name).parent, Path(name).name, ecg_like(12, 10 * fs, fs, ecg_id), fs, leads)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root


@pytest.fixture
def ptbxl_folder(tmp_path) -> Path:
    return write_ptbxl(tmp_path / "ptbxl", n=30, missing=(7,))


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory):
    """A small prepared cache of synthetic Georgia-layout data (100 Hz, 10 s), shared by training tests."""
    import os

    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig

    root = tmp_path_factory.mktemp("tiny")
    old = os.environ.get("ECGTL_CACHE_DIR")
    os.environ["ECGTL_CACHE_DIR"] = str(root)
    try:
        return prepare(PrepareConfig(spec="synthetic:g12ec?n=80&seed=4"), cache_dir=root, progress=False)
    finally:
        if old is None:
            os.environ.pop("ECGTL_CACHE_DIR")
        else:
            os.environ["ECGTL_CACHE_DIR"] = old


@pytest.fixture
def postgres_database():
    """A fresh database on the PostgreSQL server that .ci/run starts; the test is skipped without one.

    Yields a function that creates another fresh database and returns its SQLAlchemy URL.
    """
    import os
    import uuid

    base = os.environ.get("ECGTL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets ECGTL_TEST_POSTGRES_URL")
    psycopg2 = pytest.importorskip("psycopg2")
    admin_dsn = base.replace("postgresql+psycopg2://", "postgresql://")
    created = []

    def new_database() -> str:
        name = f"ecgtl_{uuid.uuid4().hex[:12]}"
        connection = psycopg2.connect(admin_dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        connection.close()
        created.append(name)
        return base.rsplit("/", 1)[0] + f"/{name}"

    yield new_database
    connection = psycopg2.connect(admin_dsn)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in created:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    connection.close()


def use_mlflow_store(patch: pytest.MonkeyPatch, folder: Path, experiment: str, cache: bool = False) -> str:
    """Point MLflow (and, with `cache`, ecgtl's cache) at a fresh store in `folder`; returns its URI.

    Runs from `folder` (MLflow writes artifacts relative to it) and drops an inherited MLFLOW_RUN_ID.
    """
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    patch.chdir(folder)
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    if cache:
        patch.setenv("ECGTL_CACHE_DIR", str(folder / "cache"))
    patch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri


def store_trained_once(factory: pytest.TempPathFactory, experiment: str, build):
    """A fresh store (and cache) in a new folder, `build()` run against it once (a module fixture's training);
    returns (folder, what build returned). Tests then take copies (`use_store_copy`) or read it."""
    import mlflow

    folder = factory.mktemp(experiment)
    with pytest.MonkeyPatch.context() as patch:
        use_mlflow_store(patch, folder, experiment, cache=True)
        built = build()
        if mlflow.active_run():
            mlflow.end_run()
    return folder, built


def copy_store(prepared: Path, folder: Path) -> Path:
    """A private copy of a prepared store (its `mlflow.db`, `mlruns/` and any other files) in `folder`.

    Stage tests each take one, so that none depends on what another test changed (versions, aliases, runs),
    while the models are trained once per module. MLflow writes absolute artifact locations into the
    database; they are rewritten to the copy, so nothing the test does reaches the prepared store."""
    import shutil
    import sqlite3

    shutil.copytree(prepared, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cache"))
    connection = sqlite3.connect(folder / "mlflow.db")
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in connection.execute(f"PRAGMA table_info('{table}')").fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    connection.execute(f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                                       f'WHERE "{column[1]}" LIKE ?', (str(prepared), str(folder), f"%{prepared}%"))
        connection.commit()
    finally:
        connection.close()
    return folder


def use_store_copy(patch: pytest.MonkeyPatch, prepared: Path, folder: Path, experiment: str) -> str:
    """`use_mlflow_store` on a private copy of `prepared` (the cache stays shared: it is keyed and read-only)."""
    copy_store(prepared, folder)
    uri = use_mlflow_store(patch, folder, experiment)
    patch.setenv("ECGTL_CACHE_DIR", str(prepared / "cache"))
    return uri


def subprocess_env(mlflow_url: str, experiment: str, folder: Path) -> dict:
    """The environment of an `ecgtl` subprocess on a given MLflow store, with its own cache and this checkout."""
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_url, "MLFLOW_EXPERIMENT_NAME": experiment,
           "ECGTL_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("MLFLOW_RUN_ID", None)
    return env


CLASSES = ["A", "B", "C"]


def log_untrained_model(domain: str = "time", scaling: str = "dataset", aggregation: str = "max",
                        leads: str = "all12", calibration: str = "platt") -> str:
    """An untrained model with a fitted scaler and calibrator, logged as the active store's run's pyfunc (export
    parity and hostile-input tests need no training: every step around the window model is what is compared)."""
    import mlflow
    import torch

    from ecgtl import serving, tracking
    from ecgtl.evaluation.calibration import make_calibrator
    from ecgtl.inference import BundleInfo, save_bundle
    from ecgtl.inputs import parse_leads
    from ecgtl.models import create_model
    from ecgtl.pipeline import InputPipeline

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    signals = rng.normal(0, 0.3, (40, 12, 1000)).astype(np.float32)
    pipeline = InputPipeline(fs=100.0, leads=parse_leads(leads), domain=domain, aggregation=aggregation,
                             scaling=scaling).fit_scaler(signals, np.full(40, 1000))
    model = create_model("xresnet1d18", len(CLASSES), n_leads=pipeline.n_channels).eval()
    logits = rng.normal(0, 2, (200, len(CLASSES)))
    calibrator = make_calibrator(calibration).fit(logits, (rng.random((200, len(CLASSES))) < 0.3).astype(float))
    info = BundleInfo("xresnet1d18", CLASSES, "shared18", pipeline.to_dict(), calibrator.to_dict(), [0.3, 0.5, 0.7])
    tracking.configure()
    with mlflow.start_run():
        bundle = save_bundle(Path.cwd() / f"bundle-{domain}", model, info)
        return tracking.log_model(bundle, signals[:2], python_model=serving.pyfunc_model(),
                                  signature=serving.signature(100.0, CLASSES), metadata={})


def assert_val_logits_are_the_logged_models(run_id: str, data, folder: Path) -> None:
    """The val logits a run logged (its report reuses the fit's) are what its logged model computes on the val
    split of `data` (a DataConfig), record by record."""
    from ecgtl import tracking
    from ecgtl.data.cache import prepare
    from ecgtl.data.dataset import valid_lengths
    from ecgtl.inference import load_bundle

    logged = tracking.load_predictions(run_id, "val")
    model, info = load_bundle(tracking.download_model(f"runs:/{run_id}/model", folder))
    val = prepare(data.prepare_config()).split("val")
    assert list(logged["record_ids"]) == list(val.index["record_id"])
    np.testing.assert_array_equal(logged["logits"],
                                  info.input_pipeline().predict_logits(model, val.signals, valid_lengths(val)))
