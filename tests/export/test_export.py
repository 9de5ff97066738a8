"""ONNX export: the window model and its pipeline as JSON give the pyfunc's calibrated probabilities (to 1e-4)
through the numpy/onnxruntime reference runner, which also runs where torch is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLASSES, log_untrained_model, use_mlflow_store

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

@pytest.mark.parametrize(("domain", "scaling", "aggregation", "leads", "calibration"), [
    ("time", "dataset", "max", "all12", "temperature"),
    ("fft_abs", "record", "mean", "limb6", "isotonic"),
])
def test_onnx_path_matches_the_pyfunc(tmp_path, monkeypatch, domain, scaling, aggregation, leads, calibration):
    import mlflow

    from ecgtl.export import export
    from ecgtl.onnx_runner import OnnxPipeline

    use_mlflow_store(monkeypatch, tmp_path, "export-test", cache=True)
    uri = log_untrained_model(domain, scaling, aggregation, leads, calibration)
    out = tmp_path / "export"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")
    written = export(uri, out)
    assert sorted(p.name for p in written) == ["model.onnx", "pipeline.json", "run_onnx.py", "signal_checks.py"]
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [
        "model.onnx", "notes.txt", "pipeline.json", "run_onnx.py", "signal_checks.py"]  # nothing else, no staging
    spec = json.loads((out / "pipeline.json").read_text())
    assert spec["opset"] == 18 and spec["classes"] == CLASSES and spec["pipeline"]["domain"] == domain
    signals = np.random.default_rng(1).normal(0, 0.3, (20, 12, 1130)).astype(np.float32)  # 11.3 s: a flush window
    expected = mlflow.pyfunc.load_model(uri).predict(signals).to_numpy()
    probabilities, labels = OnnxPipeline(out).predict(signals)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert labels.shape == (20, 3) and labels.dtype == bool


def test_the_reference_runner_needs_only_numpy_and_onnxruntime(tmp_path, monkeypatch):
    """A fresh venv with numpy and onnxruntime (no torch, no ecgtl) runs the exported model."""
    from ecgtl.export import export
    from ecgtl.onnx_runner import OnnxPipeline

    use_mlflow_store(monkeypatch, tmp_path, "export-venv", cache=True)
    out = tmp_path / "export"
    export(log_untrained_model("time", "dataset", "max", "all12", "platt"), out)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "onnxruntime"], check=True, timeout=600)
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0
    signals = np.random.default_rng(2).normal(0, 0.3, (3, 12, 1000)).astype(np.float32)
    np.save(tmp_path / "signals.npy", signals)
    done = subprocess.run([str(python), str(out / "run_onnx.py"), str(out), str(tmp_path / "signals.npy")],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    result = json.loads(done.stdout)
    np.testing.assert_allclose(result["probabilities"], OnnxPipeline(out).predict(signals)[0], atol=1e-5)


def test_the_runner_calibrates_like_ecgtl():
    from ecgtl.evaluation.calibration import CALIBRATION_METHODS, calibrated_probabilities, make_calibrator
    from ecgtl.onnx_runner import calibrate

    rng = np.random.default_rng(3)
    logits, y = rng.normal(0, 3, (300, 4)), (rng.random((300, 4)) < 0.4).astype(float)
    for method in CALIBRATION_METHODS:
        fitted = make_calibrator(method).fit(logits, y)
        np.testing.assert_allclose(calibrate(logits, fitted.to_dict()), fitted.predict_proba(logits), atol=1e-9)
    np.testing.assert_allclose(calibrate(logits, None), calibrated_probabilities(logits), atol=1e-12)


def test_export_refuses_an_unknown_format_and_a_file_as_folder(tmp_path):
    from ecgtl.errors import EcgtlError
    from ecgtl.export import export

    with pytest.raises(EcgtlError, match="export format must be one of onnx; got 'tflite'"):
        export("models:/x@champion", tmp_path, "tflite")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EcgtlError, match="exists and is not a folder"):
        export("models:/x@champion", tmp_path / "file")
