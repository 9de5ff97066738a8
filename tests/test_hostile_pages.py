"""Pages, filters and secrets under hostile names: every string that reaches a page is escaped, a model name
with an apostrophe is searched safely, credentials never reach params, tags, errors or output, and the
dashboard logs only the pages it wrote."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from conftest import use_mlflow_store

from ecgtl import runs
from ecgtl.cli import cli

EVIL = "</title><script>alert(1)</script>'\"&"


def test_page_titles_are_escaped():
    from ecgtl.plotting import figures_to_html

    page = figures_to_html([], title=f"ecgtl tuning: {EVIL}")
    assert "<script>alert" not in page and "&lt;/title&gt;&lt;script&gt;alert(1)" in page


def _hostile_store(tmp_path, monkeypatch):
    """An experiment, a finished finetune run and a registered model whose every string is hostile."""
    uri = use_mlflow_store(monkeypatch, tmp_path, f"exp {EVIL}")
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(f"exp {EVIL}")
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"run {EVIL}") as run:
        mlflow.set_tags({runs.STAGE: "finetune", runs.TARGET: f"target {EVIL}", runs.FRACTION: "1",
                         runs.MLFLOW_RUN_NAME: f"run {EVIL}"})
        mlflow.log_metrics({"test_macro_auc": 0.8, "test_macro_auc_ci_low": 0.7, "test_macro_auc_ci_high": 0.9,
                            "test_ece": 0.1, "test_ece_temperature": 0.05, "test_auc_LVH": 0.8})
    client = mlflow.MlflowClient()
    name = "o'brien <b>model & <img src=x onerror=alert(1)>"  # legal in MLflow: no '/' or ':'
    client.create_registered_model(name)
    client.create_model_version(name, source=str(tmp_path), run_id=run.info.run_id)
    client.set_model_version_tag(name, "1", "ecgtl.promotion.reason", f"reason {EVIL}")
    client.set_registered_model_alias(name, "champion", "1")
    return experiment.name, name


def test_dashboard_escapes_every_string_and_logs_only_its_pages(tmp_path, monkeypatch):
    from ecgtl.dashboard import PAGES, dashboard

    experiment, model_name = _hostile_store(tmp_path, monkeypatch)
    out = tmp_path / "site"
    out.mkdir()
    (out / ".env").write_text("SECRET=1\n")
    (out / "keys").mkdir()
    (out / "keys" / "id_rsa").write_text("private\n")
    pages = dashboard(out, experiment)
    assert sorted(p.name for p in pages) == sorted(name for name, _ in PAGES)
    for page in pages:
        text = page.read_text()
        assert "<script>alert" not in text, page.name
        assert "</title><script>" not in text
    registry = (out / "registry.html").read_text()
    assert "o&#x27;brien &lt;b&gt;model &amp;" in registry and "<img src=x" not in registry
    assert "champion" in registry and "reason &lt;/title&gt;" in registry
    client = mlflow.MlflowClient()
    logged = client.search_runs([mlflow.get_experiment_by_name(experiment).experiment_id],
                                f"tags.`{runs.STAGE}` = 'dashboard'")[0]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "dashboard")}
    assert artifacts == {f"dashboard/{name}" for name, _ in PAGES}  # no .env, no keys/
    assert (out / ".env").read_text() == "SECRET=1\n"  # untouched


def test_credentials_never_reach_params_tags_errors_or_output(tmp_path, monkeypatch):
    uri = use_mlflow_store(monkeypatch, tmp_path, "secrets", cache=True)
    storage = "postgresql+psycopg2://ecgtl:s3cr3t-pw@127.0.0.1:1/ablation"
    result = CliRunner().invoke(cli, [
        "ablation", "--preset", "custom", "--quick", "--seeds", "1", "--axis", "init=scratch",
        "--source", "synthetic:ptbxl?n=40&seed=3", "--target", "synthetic:g12ec?n=40&seed=3",
        "--storage", storage, "--study_name", "s"])
    assert result.exit_code != 0 and "s3cr3t-pw" not in result.output
    client = mlflow.MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("secrets").experiment_id], "")
    assert run.data.params["storage"] == "postgresql+psycopg2://ecgtl:***@127.0.0.1:1/ablation"
    assert not any("s3cr3t-pw" in str(v) for v in (*run.data.params.values(), *run.data.tags.values()))
    error = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert "s3cr3t-pw" not in Path(error).read_text()


@pytest.mark.parametrize("text", ["postgresql+psycopg2://u:p@h/db", "see mysql://root:hunter2@10.0.0.1:3306/x now"])
def test_redact_masks_only_the_password(text):
    from ecgtl.redaction import redact

    masked = redact(text)
    assert ":***@" in masked and "hunter2" not in masked and ":p@" not in masked
    assert redact("sqlite:///tmp/a.db") == "sqlite:///tmp/a.db"
