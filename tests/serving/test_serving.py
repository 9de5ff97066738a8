"""The served model: input validation (400-class errors), a real `mlflow models serve` process on 127.0.0.1, a
fresh virtualenv without ecgtl (slow), and `ecgtl predict` on records at any sampling rate."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import use_mlflow_store

from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig
from ecgtl.stages.finetune import finetune
from ecgtl.training.config import TrainConfig

MODEL = "models:/ecgtl-finetuned@champion"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with a champion of ecgtl-finetuned (tiny), and raw 100 Hz test records for it."""
    import mlflow

    folder = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as patch:
        uri = use_mlflow_store(patch, folder, "serving-test", cache=True)
        pretrained = PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=100&seed=9"), model="xresnet1d18",
                                    train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20)
        finetune(FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=100&seed=9"),
                                train=TrainConfig(epochs=1, batch_size=32, schedule="gradual", decay=2.0),
                                n_bootstrap=20), fallback_pretrain=pretrained)
        from ecgtl.data.cache import prepare
        from ecgtl.data.prepare_config import PrepareConfig

        test = prepare(PrepareConfig(spec="synthetic:g12ec?n=100&seed=9")).split("test")
        signals = np.asarray(test.signals[:3], dtype=np.float32)
        local = mlflow.pyfunc.load_model(MODEL).predict(signals).to_numpy()
        yield {"uri": uri, "folder": folder, "signals": signals, "expected": local,
               "env": {**os.environ, "MLFLOW_TRACKING_URI": uri, "ECGTL_CACHE_DIR": str(folder / "cache")}}


@pytest.mark.parametrize(("data", "params", "message"), [
    (np.zeros((2, 11, 1000), np.float32), None, r"shape \(2, 11, 1000\): expected \[records, 12 leads, samples\]"),
    (np.zeros((2, 12), np.float32), None, r"shape \(2, 12\): expected \[records, 12 leads, samples\]"),
    (np.array([[["a"] * 1000] * 12]), None, "not numeric"),
    (np.full((1, 12, 1000), np.nan, np.float32), None, "NaN"),
    (np.zeros((1, 12, 1000), np.float32), {"fs": 0.5}, "fs 0.5 Hz is outside"),
    (np.zeros((1, 12, 100), np.float32), None, "shorter than one 2.5 s window"),
    (np.full((1, 12, 1000), 3e38, np.float32), None, "values beyond ±1000 mV"),  # was a 200 with NaN tokens
    (np.zeros((1, 12, 1_000_000), np.float32), {"fs": 50}, "more than the 6000000 one request may carry"),
])
def test_bad_input_is_a_400_class_error_with_a_message(data, params, message):
    from mlflow.exceptions import MlflowException

    from ecgtl.serving import validated_signals

    with pytest.raises(MlflowException, match=message) as info:
        validated_signals(data, InputPipeline(fs=100.0, crop_s=2.5), (params or {}).get("fs"))
    assert info.value.get_http_status_code() == 400


def test_in_process_pyfunc_resamples_records_at_another_rate(served):
    import mlflow

    from ecgtl.data.signal import resample

    model = mlflow.pyfunc.load_model(MODEL)
    at_500 = resample(served["signals"], 100, 500)
    again = model.predict(at_500, params={"fs": 500.0}).to_numpy()
    assert again.shape == served["expected"].shape
    np.testing.assert_allclose(again, served["expected"], atol=0.05)  # two resamplings apart
    assert list(model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 12, -1]
    assert "in mV at 100 Hz" in model.metadata.metadata["ecgtl_input"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, payload: dict) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.network
def test_mlflow_models_serve_answers_records_and_rejects_bad_ones_with_400(served):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL, "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port), "--workers", "1"], env=served["env"],
                              cwd=served["folder"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the model server did not start:\n" + server.stdout.read()[-3000:])
        status, body = _post(port, {"inputs": served["signals"].tolist()})
        assert status == 200, body
        predictions = json.loads(body)["predictions"]
        values = np.array([[row[c] for c in row] for row in predictions]) if isinstance(predictions[0], dict) \
            else np.array(predictions)
        np.testing.assert_allclose(values, served["expected"], rtol=1e-4, atol=1e-5)
        for payload, message in (
            ({"inputs": served["signals"][:, :11].tolist()}, "12"),
            ({"inputs": [[["x"] * 1000] * 12]}, ""),
            ({"inputs": served["signals"].tolist(), "params": {"fs": -5}}, "fs"),
            ({"inputs": served["signals"][:, :, :50].tolist()}, "shorter than one"),
        ):
            status, body = _post(port, payload)
            assert status == 400, (status, body[:500])
            assert message in body and "Traceback" not in body.split("stack_trace")[0]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_model_loads_in_a_fresh_virtualenv_without_ecgtl(served, tmp_path):
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(MODEL, dst_path=str(tmp_path / "model")))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the pinned CPU wheel first
    subprocess.run([*pip, "-r", str(model_dir / "requirements.txt")], check=True)
    np.save(tmp_path / "signals.npy", served["signals"])
    script = ("import sys, numpy as np, mlflow\n"
              "try:\n    import ecgtl  # noqa\n    sys.exit('ecgtl is installed here')\nexcept ImportError:\n    pass\n"
              f"model = mlflow.pyfunc.load_model({MODEL!r})\n"
              f"print(model.predict(np.load({str(tmp_path / 'signals.npy')!r})).to_json())\n")
    env = {k: v for k, v in served["env"].items() if k != "PYTHONPATH"}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import io

    import pandas as pd

    elsewhere = pd.read_json(io.StringIO(done.stdout.strip().splitlines()[-1])).to_numpy()
    np.testing.assert_allclose(elsewhere, served["expected"], rtol=1e-5, atol=1e-6)


def test_predict_reads_records_at_any_rate_and_lists_unreadable_ones(served, tmp_path):
    from conftest import digital_ecg, write_cinc

    from ecgtl.cli import cli

    write_cinc(tmp_path / "records", "E00001", digital_ecg(seed=1))  # 500 Hz
    write_cinc(tmp_path / "records", "S00001", digital_ecg(n_samples=20_000, fs=1000, seed=2), fs=1000)
    broken = write_cinc(tmp_path / "records", "E00002", digital_ecg(seed=3))
    broken.with_suffix(".mat").write_bytes(b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", served["uri"])
        result = CliRunner().invoke(cli, ["predict", str(tmp_path / "records"), "--model", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["record"] for r in data["records"]] == ["E00001", "S00001"]
    assert [r["fs"] for r in data["records"]] == [500, 1000]
    assert all(set(r["probabilities"]) == set(data["classes"]) for r in data["records"])
    assert len(data["problems"]) == 1 and "E00002.mat: empty payload file" in data["problems"][0]["reason"]
    table = CliRunner().invoke(cli, ["predict", str(tmp_path / "records" / "E00001.hea"), "--model", MODEL],
                               env={"MLFLOW_TRACKING_URI": served["uri"]})
    assert table.exit_code == 0 and "E00001" in table.output and "labels" in table.output


def test_logging_the_pyfunc_prints_no_type_hint_warning(tmp_path, monkeypatch):
    """Every registration used to print MLflow's yellow "Add type hints to the `predict` method" warning."""
    import warnings

    import mlflow
    from conftest import use_mlflow_store

    from ecgtl import serving

    use_mlflow_store(monkeypatch, tmp_path, "hints")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "placeholder.txt").write_text("the pyfunc is only logged here, not loaded")
    with warnings.catch_warnings(record=True) as caught, mlflow.start_run():
        warnings.simplefilter("always")
        mlflow.pyfunc.log_model(name="model", python_model=serving.pyfunc_model(), artifacts={"bundle": str(bundle)},
                                signature=serving.signature(100.0, ["A", "B"]))
    assert not [w for w in caught if "type hint" in str(w.message).lower()], [str(w.message) for w in caught]


def test_served_outputs_that_are_not_finite_are_a_400_not_a_200_with_nan(served, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    from ecgtl.inference import Predictor

    model = mlflow.pyfunc.load_model(MODEL)
    monkeypatch.setattr(Predictor, "predict_proba", lambda self, signals: np.full((len(signals), 18), np.nan))
    with pytest.raises(MlflowException, match=r"output is not finite for record\(s\) \[0, 1, 2\]") as info:
        model.predict(served["signals"])
    assert info.value.get_http_status_code() == 400
