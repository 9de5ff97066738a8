"""MLflow tracking: the only module that talks to MLflow for runs, artifacts, models and the registry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ecgtl.evaluation.report import EvaluationReport
from ecgtl.plotting import figures_to_html, save_figure


def log_evaluation_report(report: EvaluationReport, artifact_path: str = "evaluation", png: bool = True) -> None:
    """Log a report to the active MLflow run: metrics (stable keys), per-class CSV, calibrators (JSON),
    self-contained HTML figures (plotly.js embedded once per page) and, where kaleido works, PNGs."""
    import mlflow

    mlflow.log_metrics({key: value for key, value in report.metrics.items() if value == value})  # drop NaN
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report.per_class.to_csv(folder / "per_class.csv", index=False)
        (folder / "calibrators.json").write_text(json.dumps(
            {"primary": report.primary_calibration, **{k: c.to_dict() for k, c in report.calibrators.items()}}))
        (folder / "thresholds.json").write_text(json.dumps(dict(zip(report.classes, report.thresholds.tolist(), strict=True))))
        (folder / "skipped_classes.json").write_text(json.dumps(report.skipped))
        if report.figures:
            (folder / "report.html").write_text(figures_to_html(list(report.figures.values()), "ecgtl evaluation"),
                                                encoding="utf-8")
            if png:
                try:
                    save_figure(report.figures["reliability"], folder / "reliability.png", scale=1.5)
                except Exception as exc:  # PNG is optional (needs kaleido + Chromium); HTML always is logged
                    (folder / "png_skipped.txt").write_text(str(exc))
        mlflow.log_artifacts(str(folder), artifact_path)
