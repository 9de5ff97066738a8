"""The evaluation report: stable keys, per-class table, calibrators, figures; logged to MLflow (sqlite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgtl.data.labels import SHARED18, SHARED18_MAP
from ecgtl.errors import EvaluationError
from ecgtl.evaluation.report import evaluate_predictions, metric_class_name


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 18)) < np.geomspace(0.25, 0.02, 18)).astype(int)
    return y, 3.0 * (y * 1.2 + rng.standard_normal(y.shape) - 1.5)  # informative but over-confident


def _report(**kwargs):
    y_val, z_val = _split(400, 1)
    y_test, z_test = _split(500, 2)
    y_test[:, SHARED18.index("SEHYP")] = 0
    return evaluate_predictions(y_val, z_val, y_test, z_test, SHARED18, n_bootstrap=200, seed=0, **kwargs)


def test_report_keys_values_and_skips():
    report = _report()
    k = report.metrics
    for key in ("test_macro_auc", "test_macro_auc_ci_low", "test_macro_auc_ci_high", "test_micro_auc", "test_fmax",
                "test_ece", "test_ece_platt", "test_ece_temperature", "test_ece_isotonic", "test_brier",
                "test_macro_f1", "test_auc_LAO_LAE", "test_auc_LVH_ci_low"):
        assert key in k and np.isfinite(k[key]), key
    assert "test_auc_SEHYP" not in k and report.skipped == {"SEHYP": "no positive records"}
    assert k["test_n_classes_evaluated"] == 17
    assert k["test_macro_auc_ci_low"] < k["test_macro_auc"] < k["test_macro_auc_ci_high"]
    assert k["test_ece_temperature"] < k["test_ece"] and k["test_ece_platt"] < k["test_ece"]
    assert list(report.per_class["class"]) == list(SHARED18)
    assert report.per_class.loc[report.per_class["class"] == "SEHYP", "skipped"].item() == "no positive records"
    assert set(report.figures) == {"reliability", "reliability_per_class", "roc"}
    assert metric_class_name("LAO/LAE") == "LAO_LAE"
    assert "macro AUC" in report.summary()


def test_report_challenge_score_with_weights(tmp_path):
    codes = [SHARED18_MAP[c][0] for c in ("1AVB", "CRBBB", "LVH")] + ["426783006"]
    weights = np.eye(4) + 0.25 * (1 - np.eye(4))
    lines = ["," + ",".join(codes)] + [",".join([c, *map(str, row)]) for c, row in zip(codes, weights, strict=True)]
    (tmp_path / "weights.csv").write_text("\n".join(lines) + "\n")
    class_codes = {name: (SHARED18_MAP[name][0],) for name in SHARED18}
    report = _report(challenge_weights=tmp_path / "weights.csv", class_codes=class_codes)
    # Three scored classes of shared18, no normal class among them: a partial score, named so.
    assert -1 < report.metrics["test_challenge_score_partial"] <= 1 and "test_challenge_score" not in report.metrics
    complete = {**class_codes, "SEHYP": ("426783006",)}  # now every class of the table has a model class
    assert "test_challenge_score" in _report(challenge_weights=tmp_path / "weights.csv", class_codes=complete).metrics


def test_stored_calibration_is_applied_not_refitted():
    from ecgtl.evaluation.calibration import TemperatureScaling
    from ecgtl.evaluation.report import StoredCalibration

    y_test, z_test = _split(500, 2)
    stored = StoredCalibration(TemperatureScaling(temperatures=np.full(18, 2.0)), np.full(18, 0.5))
    report = evaluate_predictions(None, None, y_test, z_test, SHARED18, n_bootstrap=50, stored=stored)
    assert set(report.calibrators) == {"temperature"} and report.calibrators["temperature"] is stored.calibrator
    assert "test_ece_platt" not in report.metrics and "test_ece_temperature" in report.metrics
    np.testing.assert_array_equal(report.thresholds, stored.thresholds)
    refitted = _report()
    assert report.metrics["test_ece_temperature"] != refitted.metrics["test_ece_temperature"]


def test_report_rejects_mismatched_class_names():
    y, z = _split(50, 0)
    with pytest.raises(EvaluationError, match="3 class names for 18"):
        evaluate_predictions(y, z, y, z, ["a", "b", "c"], n_bootstrap=10)


def test_log_report_to_mlflow(tmp_path, monkeypatch):
    import mlflow

    from ecgtl.tracking import log_evaluation_report

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("report-test")
    report = _report()
    with mlflow.start_run() as run:
        log_evaluation_report(report, png=False)
    client = mlflow.MlflowClient()
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["test_macro_auc"] == pytest.approx(report.metrics["test_macro_auc"])
    assert "test_auc_LAO_LAE" in logged and "test_ece_temperature" in logged
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/per_class.csv", "evaluation/calibrators.json", "evaluation/report.html"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "evaluation/calibrators.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["primary"] == "temperature"
    html = Path(client.download_artifacts(run.info.run_id, "evaluation/report.html", str(tmp_path))).read_text()
    assert html.count("plotly.js v") == 1 and 'src="https://cdn.plot.ly' not in html  # embedded once
