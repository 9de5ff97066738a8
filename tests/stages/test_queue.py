"""The task queue under killed workers: a re-run fails the trials of dead workers and retries what failed."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from ecgtl.stages import queue

TASKS = [{"kind": "cell", "n": n} for n in range(3)]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _states(study) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for trial in study.get_trials(deepcopy=False):
        found.setdefault(json.loads(trial.user_attrs[queue.TASK_ATTR])["n"], []).append(trial.state.name)
    return found


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_rerun_after_killed_workers_retries_running_and_failed_tasks_and_ends(tmp_path, kind):
    url = str(tmp_path / "queue.log") if kind == "journal" else f"sqlite:///{tmp_path / 'queue.db'}"
    study = queue.create_queue(queue.open_storage(url), "grid", TASKS)
    killed = study.ask()  # a worker took task 0 and was killed with it (no heartbeat in a journal file)
    killed.set_user_attr(queue.WORKER_ATTR, f"{queue.worker_id().rpartition(':')[0]}:{_dead_pid()}")
    crashed = study.ask()  # task 1's worker died after its cell failed
    study.tell(crashed, state=optuna.trial.TrialState.FAIL)
    done = study.ask()
    study.tell(done, 0.9)  # task 2 finished
    assert _states(study) == {0: ["RUNNING"], 1: ["FAIL"], 2: ["COMPLETE"]}

    rerun = queue.create_queue(queue.open_storage(url), "grid", TASKS)  # the same command again
    assert _states(rerun) == {0: ["FAIL", "WAITING"], 1: ["FAIL", "WAITING"], 2: ["COMPLETE"]}
    ran = []
    assert queue.work(rerun, lambda task: ran.append(task["n"]) or 1.0) == 2
    assert sorted(ran) == [0, 1]
    queue.wait_for_other_workers(rerun, poll_s=0.01)  # nothing RUNNING is left: returns at once
    again = queue.create_queue(queue.open_storage(url), "grid", TASKS)
    assert queue.waiting(again) == 0  # everything has a COMPLETE trial: a third run retries nothing


def test_a_live_workers_trial_is_left_running(tmp_path):
    study = queue.create_queue(queue.open_storage(str(tmp_path / "q.log")), "grid", TASKS[:1])
    trial = study.ask()
    trial.set_user_attr(queue.WORKER_ATTR, queue.worker_id())  # this very process: alive
    assert queue.fail_dead_trials(study) == 0 and _states(study) == {0: ["RUNNING"]}
