"""Past one machine: an ablation's cells on a real PostgreSQL (Optuna queue and MLflow store), one `ecgtl ablation`
plus one `ecgtl ablation-worker` process; every cell runs exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import subprocess_env

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def test_two_workers_on_postgresql_run_every_cell_exactly_once(postgres_database, tmp_path):
    import mlflow
    import optuna

    queue_url, mlflow_url = postgres_database(), postgres_database()
    env = subprocess_env(mlflow_url, "distributed", tmp_path)
    tiny = ["--quick", "--source", "synthetic:ptbxl?n=120&seed=0", "--target", "synthetic:g12ec?n=120&seed=0",
            "--pretrain_epochs", "1", "--finetune_epochs", "1", "--n_bootstrap", "20", "--seeds", "2",
            "--axis", "target_fraction=1,0.5"]
    shared = ["--storage", queue_url]
    creator = subprocess.Popen([sys.executable, "-m", "ecgtl.cli", "ablation", "--preset", "custom", *tiny, *shared,
                                "--study_name", "cells"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    worker = subprocess.Popen([sys.executable, "-m", "ecgtl.cli", "ablation-worker", *shared, "--study-name", "cells"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    creator_out, _ = creator.communicate(timeout=600)
    worker_out, _ = worker.communicate(timeout=120)
    assert creator.returncode == 0, creator_out[-4000:]
    assert worker.returncode == 0, worker_out[-4000:]
    assert "8 of 8 cells finished" in creator_out

    study = optuna.load_study(study_name="cells", storage=queue_url)
    tasks = [t.user_attrs["ecgtl.task"] for t in study.get_trials() if "ecgtl.task" in t.user_attrs]
    assert len(tasks) == 9 and len(set(tasks)) == 9  # 1 pretraining + 8 cells, each enqueued once
    states = Counter(t.state.name for t in study.get_trials() if "ecgtl.task" in t.user_attrs)
    assert states == {"COMPLETE": 9}

    client = mlflow.MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name("distributed").experiment_id
    found = client.search_runs([experiment], "", max_results=1000)
    by_stage = Counter(r.data.tags.get("ecgtl.stage") for r in found)
    assert by_stage == {"ablation": 1, "pretrain": 1, "finetune": 4, "scratch": 4}
    cells = [r for r in found if r.data.tags.get("ecgtl.stage") in ("finetune", "scratch")]
    keys = [json.dumps({k: v for k, v in r.data.tags.items() if k.startswith("ecgtl.axis.")}, sort_keys=True)
            for r in cells]
    assert len(set(keys)) == 8  # no cell ran twice
    parent = next(r for r in found if r.data.tags.get("ecgtl.stage") == "ablation")
    assert all(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in cells)
    assert all(r.info.status == "FINISHED" for r in found)
