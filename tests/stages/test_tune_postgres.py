"""Tuning on a real PostgreSQL with two workers: no trial lost or run twice, one MLflow child run per trial, and a
worker killed with SIGKILL leaves its trial FAIL (heartbeat) while the other worker carries on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import subprocess_env

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def test_two_tuning_workers_on_postgresql_and_a_killed_worker(postgres_database, tmp_path):
    import mlflow
    import optuna

    storage, mlflow_url = postgres_database(), postgres_database()
    env = subprocess_env(mlflow_url, "tuning", tmp_path)
    cli = [sys.executable, "-m", "ecgtl.cli"]
    pretrained = subprocess.run([*cli, "pretrain", "--data.spec", "synthetic:ptbxl?n=100&seed=5", "--model",
                                 "xresnet1d18", "--train.epochs", "1", "--train.batch_size", "32", "--n_bootstrap", "20"],
                                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    leader = subprocess.Popen([*cli, "tune", "--finetune.data.spec", "synthetic:g12ec?n=100&seed=5",
                               "--finetune.train.epochs", "3", "--finetune.n_bootstrap", "20", "--space.batch_size", "32",
                               "--n_trials", "8", "--storage", storage, "--study_name", "shared", "--final", "false",
                               "--pruner", "none"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the leader creates the study; then the second worker joins
        try:
            optuna.load_study(study_name="shared", storage=storage)
            break
        except KeyError:
            time.sleep(1)
    worker = subprocess.Popen([*cli, "tune-worker", "--storage", storage, "--study-name", "shared"], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_trial = None
    deadline = time.monotonic() + 240
    while killed_trial is None and time.monotonic() < deadline:
        study = optuna.load_study(study_name="shared", storage=storage)
        for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            if trial.user_attrs.get("ecgtl.worker", "").endswith(f":{worker.pid}"):
                killed_trial = trial.number
        time.sleep(0.5)
    assert killed_trial is not None, "the second worker never started a trial"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    output, _ = leader.communicate(timeout=600)
    assert leader.returncode == 0, output[-4000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))  # none lost, none twice
    states = {t.number: t.state.name for t in trials}
    assert states[killed_trial] == "FAIL"
    assert Counter(states.values())["COMPLETE"] == 7
    run_ids = [t.user_attrs["ecgtl.run_id"] for t in trials]
    assert len(set(run_ids)) == 8
    client = mlflow.MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name("tuning").experiment_id
    trial_runs = [r for r in client.search_runs([experiment], "", max_results=100) if r.data.tags.get("ecgtl.stage") == "trial"]
    assert sorted(r.info.run_id for r in trial_runs) == sorted(run_ids)  # exactly one child run per trial
    killed_run = client.get_run(run_ids[[t.number for t in trials].index(killed_trial)])
    assert killed_run.info.status == "FAILED" and killed_run.data.tags["ecgtl.trial_state"] == "FAIL"
    workers = Counter(t.user_attrs["ecgtl.worker"].rsplit(":", 1)[1] for t in trials)
    assert len(workers) == 2  # both workers ran trials
