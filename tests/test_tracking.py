"""Tracking store details that need their own processes: a fresh sqlite store created by concurrent stages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGE = """
import sys, time
sys.path.insert(0, {root!r})
start = float(sys.argv[1])
from ecgtl import tracking
time.sleep(max(0.0, start - time.time()))  # every process reaches the store at the same moment
tracking.configure()
with tracking.stage_run("concurrent", {{"ecgtl.stage": "test"}}, {{"worker": sys.argv[2]}}) as run_id:
    pass
print("finished", run_id)
"""


def test_stages_started_at_the_same_moment_on_a_fresh_sqlite_store_all_finish(tmp_path):
    import mlflow

    script = tmp_path / "stage.py"
    script.write_text(STAGE.format(root=str(ROOT)))
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "race",
           "ECGTL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLFLOW_RUN_ID", None)
    start = time.time() + 6  # after the imports of every process
    workers = [subprocess.Popen([sys.executable, str(script), str(start), str(i)], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [w.communicate(timeout=180) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0 and "finished" in out, err[-3000:]
    runs = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name("race").experiment_id])
    assert sorted(r.data.params["worker"] for r in runs) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs)


RESUME = """
import sys, time
sys.path.insert(0, {root!r})
from ecgtl import tracking
tracking.configure()
with tracking.stage_run("resumed", {{"ecgtl.stage": "test", "ecgtl.config_hash": "k"}}, {{}}, run_id=sys.argv[1]):
    print("resuming", flush=True)
    time.sleep(6)
"""


def test_two_resumes_of_one_run_at_the_same_moment_the_second_is_refused(tmp_path, monkeypatch):
    import mlflow
    import pytest

    from ecgtl import tracking
    from ecgtl.errors import EcgtlError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ECGTL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLFLOW_RUN_ID", None)
    for key in ("MLFLOW_TRACKING_URI", "ECGTL_CACHE_DIR"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(tmp_path)
    tracking.configure()
    with pytest.raises(RuntimeError), tracking.stage_run("killed", {"ecgtl.stage": "test", "ecgtl.config_hash": "k"}, {}) as run_id:
        raise RuntimeError("killed midway")  # a FAILED run that may be resumed
    script = tmp_path / "resume.py"
    script.write_text(RESUME.format(root=str(ROOT)))
    first = subprocess.Popen([sys.executable, str(script), run_id], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "resuming"
        refused = f"--resume {run_id}: another process is resuming this run right now"
        with pytest.raises(EcgtlError, match=refused), tracking.stage_run(
                "resumed", {"ecgtl.stage": "test", "ecgtl.config_hash": "k"}, {}, run_id=run_id):
            pass
    finally:
        assert first.wait(timeout=60) == 0
    assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FINISHED"  # the first resume completed
