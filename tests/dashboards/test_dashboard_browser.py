"""The dashboard site and the MLflow UI in a real headless Chromium (Debian's chromium through Playwright): every
page loads without console errors and every plot has data; the MLflow UI lists comparable runs and renders
evaluation/report.html from the artifact view. Screenshots go to the test's folder."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import use_mlflow_store

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: .ci/run installs Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A store with finished pretrain, finetune and scratch runs, a tiny transfer matrix and ablation, a tiny
    study and a promotion."""
    import mlflow

    from ecgtl.stages.ablation import ablation
    from ecgtl.stages.configs import (
        AblationConfig,
        DataConfig,
        FinetuneConfig,
        PretrainConfig,
        PromoteConfig,
        SearchSpace,
        TuneConfig,
    )
    from ecgtl.stages.finetune import finetune, scratch_config
    from ecgtl.stages.promote import promote
    from ecgtl.stages.tune import tune
    from ecgtl.training.config import TrainConfig

    folder = tmp_path_factory.mktemp("site")
    with pytest.MonkeyPatch.context() as patch:
        uri = use_mlflow_store(patch, folder, "site", cache=True)
        tuned = FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=120&seed=1"),
                               train=TrainConfig(epochs=2, batch_size=32, schedule="gradual", decay=2.0), n_bootstrap=20)
        pretrained = PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=120&seed=1"), model="xresnet1d18",
                                    train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20)
        finetune(tuned, fallback_pretrain=pretrained)
        finetune(scratch_config(replace(tuned, model="xresnet1d18")))
        ablation(AblationConfig(preset="transfer-matrix", quick=True, sources="synthetic:ptbxl?n=120&seed=1,"
                                "synthetic:g12ec?n=120&seed=5", targets="synthetic:g12ec?n=120&seed=1",
                                pretrain_epochs=1, finetune_epochs=1, n_bootstrap=20, seeds=1))
        ablation(AblationConfig(quick=True, source="synthetic:ptbxl?n=120&seed=1", target="synthetic:g12ec?n=120&seed=1",
                                pretrain_epochs=1, finetune_epochs=1, n_bootstrap=20, seeds=1,
                                axes="target_fraction=1,0.5"))
        tune(TuneConfig(finetune=tuned, space=SearchSpace(batch_size="32", schedules="gradual,full"), n_trials=2,
                        final=True))
        promote(PromoteConfig(n_bootstrap=50, margin=-1.0, ece_tolerance=1.0))
        yield {"folder": folder, "uri": uri, "client": mlflow.MlflowClient(tracking_uri=uri)}


# Points per plot, from plotly.js's decoded traces (`_fullData`; plotly.py ships arrays base64-encoded).
PLOT_DATA = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div =>
    (div._fullData || []).reduce((n, trace) => n + ['x', 'y', 'values', 'z'].reduce(
        (m, key) => m + (trace[key] && trace[key].length ? Array.from(trace[key]).filter(v => v !== null).length : 0),
        0), 0))"""


def _visit(browser, url: str, screenshot: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    return page, errors


def test_every_dashboard_page_renders_plots_with_data_and_no_errors(browser, experiment, tmp_path):
    from ecgtl.dashboard import PAGES, dashboard

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", experiment["uri"])
        written = dashboard(tmp_path / "site", "site")
    assert [p.name for p in written] == [name for name, _ in PAGES]
    plots_seen = 0
    for page_file in written:
        page, errors = _visit(browser, page_file.as_uri(), tmp_path / f"{page_file.stem}.png")
        page.wait_for_timeout(300)
        data = page.evaluate(PLOT_DATA)
        page.screenshot(path=str(tmp_path / f"{page_file.stem}.png"), full_page=True)
        assert not errors, f"{page_file.name}: console errors {errors}"
        assert all(points > 0 for points in data), f"{page_file.name}: a plot without data ({data})"
        assert "has nothing" not in page.inner_text("body")
        if page_file.name == "explain.html":  # the 12-lead page with its heat overlay, and the lead bars
            assert len(data) == 2 and "Lead importance per class" in page.inner_text("body")
        if page_file.name == "transfer.html":  # two heatmaps (gain, lower bound) and the matrix table
            assert "Transfer matrix" in page.inner_text("body") and len(data) >= 4
        plots_seen += len(data)
        page.close()
    assert plots_seen >= 9  # overview, classes, transfer (curves, ablation, matrix), calibration, explain, tuning
    runs = experiment["client"].search_runs([experiment["client"].get_experiment_by_name("site").experiment_id],
                                            "tags.`ecgtl.stage` = 'dashboard'")
    assert runs and {a.path for a in experiment["client"].list_artifacts(runs[0].info.run_id, "dashboard")} >= {
        "dashboard/index.html", "dashboard/registry.html"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_compares_runs_and_renders_the_evaluation_report(browser, experiment, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", experiment["uri"],
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env=env,
                              cwd=experiment["folder"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        client = experiment["client"]
        experiment_id = client.get_experiment_by_name("site").experiment_id
        page, errors = _visit(browser, f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs",
                              tmp_path / "ui.png")
        page.get_by_text("finetune-xresnet1d18-g12ec-f1.00-s0").first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        for name in ("finetune-xresnet1d18-g12ec-f1.00-s0", "scratch-xresnet1d18-g12ec-f1.00-s0"):
            assert name in text  # the pretraining is nested under the finetune run
        # The runs table's Datasets column names each training run's data (mlflow.log_input), with its context.
        assert "Dataset" in text and "g12ec/train" in text and "training" in text
        page.screenshot(path=str(tmp_path / "mlflow-ui-datasets.png"), full_page=True)
        # The metric and tag columns to compare runs by are offered; show test_macro_auc and ecgtl.stage.
        page.set_viewport_size({"width": 2600, "height": 1000})  # room for the added columns
        page.get_by_role("button", name="Columns", exact=True).click()
        # test_macro_auc is among the first options; the tags are further down a virtualised list, so filter
        # for them (a filter would also match best_test_macro_auc, hence not for the metric).
        for column, search_first in (("test_macro_auc", False), ("ecgtl.stage", True)):
            if search_first:
                page.get_by_placeholder("Search columns").fill(column)
            option = page.get_by_text(column, exact=True).first
            option.wait_for(timeout=20_000)
            option.click()
        page.keyboard.press("Escape")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "mlflow-ui-runs.png"), full_page=True)
        table = page.inner_text("body")
        finetune_run = client.search_runs([experiment_id], "tags.`ecgtl.stage` = 'finetune'",
                                          order_by=["attributes.start_time ASC"])[0]  # the standalone one
        assert "test_macro_auc" in table and f"{finetune_run.data.metrics['test_macro_auc']:.4f}"[:4] in table
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{finetune_run.info.run_id}")
        page.get_by_text("test_macro_auc").first.wait_for(timeout=60_000)
        overview = page.inner_text("body")
        assert "test_macro_auc" in overview and "ecgtl.stage" in overview
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{finetune_run.info.run_id}"
                  "/artifacts/evaluation/report.html")
        frame = None
        deadline = time.monotonic() + 60
        while frame is None and time.monotonic() < deadline:
            frame = next((f for f in page.frames if f != page.main_frame and f.query_selector(".js-plotly-plot")), None)
            page.wait_for_timeout(500)
        assert frame is not None, "evaluation/report.html did not render in the artifact view"
        page.screenshot(path=str(tmp_path / "mlflow-ui-report.png"), full_page=True)
        assert min(frame.evaluate(PLOT_DATA)) > 0
        page.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
