"""A fixed list of tasks, each run exactly once, by any number of workers on one or many machines, through
Optuna's trial queue on shared storage (no home-made queue).

- `create_queue` creates the study once and enqueues every task as a WAITING trial (the task itself, JSON, in
  the trial's user attributes), then marks the study ready. A second `create_queue` on the same study name
  loads it instead (the one that created it did the enqueueing).
- Workers call `work`: `study.optimize(n_trials=1)` pops one WAITING trial at a time (RDB storage takes it
  under a row lock, journal storage under a file lock: no task runs twice), runs it with a heartbeat, and
  records COMPLETE or FAIL. Tasks are popped in the order they were enqueued.
- Storage: `postgresql+psycopg2://...` (or any SQLAlchemy URL) for many machines; a `.log` / `.journal`
  path for an Optuna journal file on one machine (what `--jobs N` uses). With an RDB storage a worker that
  dies stops its heartbeat and its trial is marked FAIL by the next worker (`fail_stale_trials`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ecgtl import runs
from ecgtl.errors import EcgtlError
from ecgtl.redaction import redact

TASK_ATTR, READY_ATTR, WORKER_ATTR = runs.TASK_ATTR, runs.READY_ATTR, runs.WORKER_ATTR
HEARTBEAT_S, GRACE_S = 10, 60  # a dead worker's trial turns FAIL about a minute after its last heartbeat; a
# busy but live worker must not miss it


def open_storage(url: str, on_stale=None):
    """An Optuna storage for `url` (RDB URL or journal file path); one clear error if it cannot be reached.
    `on_stale(study, trial)` runs when a trial whose worker died is marked FAIL (RDB storages: heartbeat)."""
    import optuna

    try:
        if "://" in url:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; the workers rely on them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                                     engine_kwargs={"pool_pre_ping": True},
                                                     heartbeat_stale_trial_callback=on_stale)
            storage.get_all_studies()  # connect now, not at the first trial
            return storage
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except EcgtlError:
        raise
    except Exception as exc:  # SQLAlchemy/driver errors come in many types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EcgtlError(f"storage {redact(url)}: cannot be used ({first_line[:300]})") from None


def create_queue(storage, study_name: str, tasks: list[dict], attrs: dict | None = None):
    """Create the study and enqueue `tasks` once. If it exists already (a re-run of the same command), load it,
    fail the trials of workers that died on this machine, and enqueue again every task that has no COMPLETE,
    WAITING or RUNNING trial: a re-run retries what failed or was killed."""
    import optuna

    try:
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        study = join_queue(storage, study_name)
        fail_dead_trials(study)
        requeue_unfinished(study)
        return study
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    for task in tasks:
        study.enqueue_trial({}, user_attrs={TASK_ATTR: json.dumps(task, sort_keys=True)})
    study.set_user_attr(READY_ATTR, len(tasks))
    return study


def join_queue(storage, study_name: str, wait_s: float = 120):
    """Load a study made by `create_queue`, waiting until its tasks are enqueued."""
    import optuna

    deadline = time.monotonic() + wait_s
    while True:
        try:
            study = optuna.load_study(storage=storage, study_name=study_name)
        except KeyError:
            study = None
        if study is not None and READY_ATTR in study.user_attrs:
            return study
        if time.monotonic() > deadline:
            raise EcgtlError(f"study {study_name!r}: {'no such study' if study is None else 'its tasks were never enqueued'}"
                             f" after {wait_s:.0f} s")
        time.sleep(1)


def worker_id() -> str:
    """`host:pid` of this process, stored on every trial it runs (how a dead worker is recognised)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_here(worker: str) -> bool | None:
    """Whether a worker of this host is alive (None: another host's, which only a heartbeat can tell)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study) -> int:
    """RUNNING trials whose worker process on this host is gone become FAIL at once (journal files have no
    heartbeat; RDB storages also fail stale trials of other hosts by heartbeat), and the storage's
    failed-trial callback runs for them as for a stale heartbeat (tuning ends the trial's MLflow run FAILED).
    Returns how many this host's check failed."""
    import optuna

    optuna.storages.fail_stale_trials(study)
    storage = study._storage  # noqa: SLF001 (Optuna exposes no public storage calls on a study)
    callback = (storage.get_heartbeat_stale_trial_callback()
                if hasattr(storage, "get_heartbeat_stale_trial_callback") else None)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _alive_here(trial.user_attrs.get(WORKER_ATTR, "")) is False:
            trial_id = trial._trial_id  # noqa: SLF001 (no public id for storage calls)
            storage.set_trial_user_attr(trial_id, runs.ERROR_ATTR, "worker died")
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            if callback is not None:
                callback(study, storage.get_trial(trial_id))
            failed += 1
    return failed


def requeue_unfinished(study) -> int:
    """Enqueue again each task whose trials all FAILED (or were pruned for lack of work); returns how many."""
    import optuna

    states: dict[str, set] = {}
    for trial in study.get_trials(deepcopy=False):
        if TASK_ATTR in trial.user_attrs:
            states.setdefault(trial.user_attrs[TASK_ATTR], set()).add(trial.state)
    alive = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING}
    again = [task for task, seen in states.items() if not seen & alive]
    for task in again:
        study.enqueue_trial({}, user_attrs={TASK_ATTR: task}, skip_if_exists=False)
    return len(again)


def task_of(trial) -> dict | None:
    """The task a trial carries, or None for a trial that was not enqueued by `create_queue`."""
    text = trial.user_attrs.get(TASK_ATTR)
    return json.loads(text) if text else None


def waiting(study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def work(study, run_task: Callable[[dict], float]) -> int:
    """Pop and run tasks until none is waiting; returns how many this worker ran. A task that raises is
    recorded FAIL (its error in the trial's user attrs) and the worker goes on."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our stages print their own progress
    ran = 0

    def objective(trial: optuna.Trial) -> float:
        task = task_of(trial)
        trial.set_user_attr(WORKER_ATTR, worker_id())
        if task is None:  # the queue emptied between our check and the pop: nothing to do
            trial.set_user_attr(runs.NOTE_ATTR, "no task left")
            raise optuna.TrialPruned("no task left")
        try:
            return float(run_task(task))
        except Exception as exc:
            trial.set_user_attr(runs.ERROR_ATTR, redact(f"{type(exc).__name__}: {exc}")[:2000])
            raise

    while waiting(study):
        optuna.storages.fail_stale_trials(study)
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        ran += 1
    return ran


def wait_for_other_workers(study, poll_s: float = 2.0) -> None:
    """Trials may still run on other machines; wait for them. A dead worker's trial turns FAIL once its
    heartbeat is stale (RDB storages), so this ends."""
    import optuna

    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        fail_dead_trials(study)
        time.sleep(poll_s)


def run_processes(target, args: tuple, count: int, after=None) -> None:
    """Run `count` spawned worker processes of `target(*args)` and wait for them (and for `after()`, e.g. other
    machines' trials); Ctrl-C or an error terminates them."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=args) for _ in range(count)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
        if after is not None:
            after()
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
