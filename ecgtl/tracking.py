"""MLflow tracking: the only module that talks to MLflow for runs, artifacts, models and the registry.

- Store: `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` (the registry needs a database); experiment
  `MLFLOW_EXPERIMENT_NAME`, else `ecgtl`.
- `stage_run` opens a run (or joins the one `mlflow run` created), sets the readable name, tags and
  params, and ends it FAILED (with the error logged) or KILLED (SIGINT/SIGTERM) instead of leaving it RUNNING.
- Models are logged once per run as a pyfunc LoggedModel carrying the ecgtl bundle; registration gives each
  new version the alias `challenger` and the first version also `champion`; a failed registration deletes
  the half-made version.
- Only "does not exist" answers count as absent (`is_not_found`); any other registry or store error
  propagates, so a transient failure never moves `champion` or starts an unrequested pretraining.
- A fresh `sqlite:///` store is created (and migrated) once, under a file lock, so that stages started at
  the same moment do not race through MLflow's schema migrations.
- Under torchrun, rank 0 alone talks to the store (`distributed.on_rank_zero` on every function that does):
  the other ranks receive what it read or returned (a run id, a model's files) and raise what it raised, so
  they never touch the tracking store. A run ends FAILED with the error of whichever rank failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ecgtl import runs
from ecgtl.data.lineage import SplitDataset
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.report import EvaluationReport
from ecgtl.packaging import runtime_requirements
from ecgtl.plotting import figures_to_html, save_figure
from ecgtl.redaction import redact
from ecgtl.training.distributed import (
    launched,
    on_rank_zero,
    peer_failure,
    rank_zero_section,
    report_failure,
    share,
    world,
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "ecgtl"
CHAMPION, CHALLENGER = "champion", "challenger"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


class StageInterrupted(KeyboardInterrupt):
    """Raised on SIGTERM so that the run ends KILLED like on Ctrl-C."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def is_not_found(exc: BaseException) -> bool:
    """Whether an MLflow error says that a run, model, version or alias does not exist (and nothing else)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # A missing alias of an existing model is reported as an invalid parameter.
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and "not found" in str(exc)


def sqlite_path(uri: str) -> Path | None:
    """The database file of an `sqlite:///` URI (resolved), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).expanduser().resolve()


def process_lock(*key: str):
    """A lock file under `<cache>/locks/` shared by every ecgtl process of this machine, named by a hash of `key`
    (a store, a model, a run): `with process_lock(...)`, or `.acquire(timeout=0)` to refuse instead of waiting."""
    import hashlib

    from filelock import FileLock

    from ecgtl.paths import cache_root

    lock = cache_root() / "locks" / f"{key[0]}-{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock))


def initialise_store(uri: str) -> None:
    """Create and migrate a `sqlite:///` store once, under a lock beside ecgtl's cache (a no-op for servers
    and databases that exist). MLflow's migrations are not safe to run from two processes at once."""
    database = sqlite_path(uri)
    if database is None:
        return
    import mlflow

    with process_lock("mlflow", str(database)).acquire(timeout=600):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # tracking tables
        client.search_registered_models(max_results=1)  # registry tables


def experiment_name() -> str:
    """Where stages log when no experiment is named: MLFLOW_EXPERIMENT_NAME, else `ecgtl`."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


@on_rank_zero
def configure(experiment: str | None = None) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress lines suffice
    import mlflow

    if mlflow.active_run() is not None:  # a nested stage: keep the parent's store and experiment
        return
    initialise_store(tracking_uri())
    mlflow.set_tracking_uri(tracking_uri())
    if not os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run` the experiment is already chosen
        chosen = mlflow.set_experiment(experiment or experiment_name())
        if EXPERIMENT_KIND_TAG not in chosen.tags:  # MLflow 3's UI then opens on the runs table, not GenAI views
            mlflow.MlflowClient().set_experiment_tag(chosen.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")


def system_metrics_from_environment() -> bool:
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() in ("true", "1")


def check_system_metrics() -> None:
    """System metrics need psutil (and nvidia-ml-py for GPUs): a clear error rather than MLflow's warning."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        raise EcgtlError("system metrics need psutil: pip install 'ecgtl[system]' (nvidia-ml-py for GPU use)")


def _raise_interrupted(signum, frame):  # noqa: ARG001
    raise StageInterrupted(f"signal {signum}")


@contextlib.contextmanager
def stage_run(run_name: str, tags: dict[str, str], params: dict, nested: bool = False,
              run_id: str | None = None, parent_run_id: str | None = None,
              system_metrics: bool = False) -> Iterator[str]:
    """Start (or resume) a run; always end it FINISHED, FAILED or KILLED. Yields the run id.

    `nested` makes it a child of the run active in this process; `parent_run_id` of a run started elsewhere
    (a worker process of an ablation or study), in that run's experiment. `system_metrics` (or MLflow's own
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true) logs CPU, memory and, where present, GPU use while it runs.
    Under torchrun rank 0 opens and ends the run and every rank gets its id; a rank that fails leaves its error
    for rank 0, which ends the run FAILED with it.
    """
    arguments = (run_name, tags, params, nested, run_id, parent_run_id, system_metrics)
    if not launched():
        with _stage_run_here(*arguments) as here:
            yield here
        return
    if not world().is_main:
        ok, value = share()
        if not ok:
            raise value
        try:
            yield value
        except BaseException as exc:
            if not isinstance(exc, KeyboardInterrupt):
                report_failure(exc)
            raise
        return
    context = _stage_run_here(*arguments)
    with rank_zero_section():
        try:
            opened = context.__enter__()
        except BaseException as exc:
            share((False, exc))
            raise
    share((True, opened))
    try:
        yield opened
    except BaseException as exc:
        with rank_zero_section():
            context.__exit__(type(exc), exc, exc.__traceback__)
        raise
    with rank_zero_section():
        context.__exit__(None, None, None)


@contextlib.contextmanager
def _stage_run_here(run_name: str, tags: dict[str, str], params: dict, nested: bool, run_id: str | None,
                    parent_run_id: str | None, system_metrics: bool) -> Iterator[str]:
    """`stage_run` in this process (rank 0 under torchrun)."""
    from filelock import Timeout

    system_metrics = system_metrics or system_metrics_from_environment()
    if system_metrics:
        check_system_metrics()

    resume_lock = None
    if run_id is not None:  # one resume of a run at a time (two would log every epoch twice)
        resume_lock = process_lock("resume", tracking_uri(), run_id)
        try:
            resume_lock.acquire(timeout=0)
        except Timeout:
            raise EcgtlError(f"--resume {run_id}: another process is resuming this run right now") from None
    try:
        with _stage_run(run_name, tags, params, nested, run_id, parent_run_id, system_metrics) as yielded:
            yield yielded
    finally:
        if resume_lock is not None:
            resume_lock.release()


@contextlib.contextmanager
def _stage_run(run_name: str, tags: dict[str, str], params: dict, nested: bool, run_id: str | None,
               parent_run_id: str | None, system_metrics: bool) -> Iterator[str]:
    import mlflow

    previous_handler = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _raise_interrupted)
    if run_id is not None:  # resuming: only an unfinished run, and only with the parameters it started with
        try:
            resumed = mlflow.MlflowClient().get_run(run_id)
        except Exception as exc:
            if is_not_found(exc):
                raise EcgtlError(f"--resume {run_id}: no such run in {tracking_uri()}") from None
            raise
        if resumed.info.status == "FINISHED":
            raise EcgtlError(f"--resume {run_id}: the run already FINISHED (it registered its model); "
                             "start a new run instead")
        if resumed.data.tags.get(runs.CONFIG_HASH) != tags.get(runs.CONFIG_HASH):
            raise EcgtlError(f"run {run_id} was started with other parameters; resume it with the same ones")
    parent = mlflow.active_run()
    if parent_run_id and parent is not None and parent.info.run_id == parent_run_id:
        nested, parent_run_id = True, None  # the parent is active in this process: plain nesting
    experiment_id = parent.info.experiment_id if (nested and parent and run_id is None) else None
    start_tags = None
    if parent_run_id and run_id is None:
        experiment_id = mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id
        start_tags = {runs.MLFLOW_PARENT: parent_run_id, runs.PARENT: parent_run_id}
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, nested=nested,
                           experiment_id=experiment_id, tags=start_tags, log_system_metrics=system_metrics)
    try:
        set_tags({**tags, runs.MLFLOW_RUN_NAME: run_name})
        if run_id is None:
            # Under `mlflow run` the run already holds the MLproject parameters; those keys stay as logged.
            existing = mlflow.get_run(run.info.run_id).data.params
            mlflow.log_params({k: redact("" if v is None else str(v)) for k, v in params.items() if k not in existing})
        yield run.info.run_id
    except BaseException as exc:
        with contextlib.suppress(ValueError):  # a second signal (torchrun stopping the job) must not cut this short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        peer = peer_failure()  # under torchrun: another rank's error, or a rank that died
        if isinstance(exc, KeyboardInterrupt) and peer is None:
            _log_error(exc)
            mlflow.end_run(status="KILLED")
        else:
            _log_error(exc, peer)
            mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous_handler)


def _log_error(exc: BaseException, peer: str | None = None) -> None:
    """The run's error: this process's, or (`peer`) that of the torchrun rank that failed first."""
    import mlflow

    with contextlib.suppress(Exception):
        message = f"another process failed: {peer}" if peer else f"{type(exc).__name__}: {exc}"
        mlflow.set_tag(runs.ERROR, redact(message)[:5000])
        text = "".join(traceback.format_exception(exc))
        mlflow.log_text(redact(f"{message}\n\n{text}" if peer else text), "error.txt")


def git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@on_rank_zero
def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


@on_rank_zero
def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags({key: redact(str(value)) for key, value in tags.items()})


@on_rank_zero
def fail_run(run_id: str, tags: dict[str, str]) -> None:
    """End a run that is not this process's active run (a dead worker's) as FAILED, with `tags`."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status="FAILED")


@on_rank_zero
def log_datasets(datasets: list[SplitDataset]) -> None:
    """Each split the active run used as an MLflow dataset input (the runs table's Datasets column), with
    context, digest, source (spec and path), a schema (signals, labels) and the profile."""
    import mlflow
    from mlflow.data.dataset import Dataset
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.types.schema import Schema, TensorSpec

    class EcgtlDatasetSource(DatasetSource):
        def __init__(self, spec: str, path: str) -> None:
            self.spec, self.path = spec, path

        @staticmethod
        def _get_source_type() -> str:
            return "ecgtl"

        def load(self, **kwargs):  # noqa: ARG002
            return self.path

        @staticmethod
        def _can_resolve(raw_source) -> bool:  # noqa: ARG004
            return False

        @classmethod
        def _resolve(cls, raw_source):
            raise NotImplementedError

        def to_dict(self) -> dict:
            return {"spec": self.spec, "path": self.path}

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict["spec"], source_dict["path"])

    class EcgtlDataset(Dataset):
        def __init__(self, split: SplitDataset) -> None:
            self.split = split
            super().__init__(EcgtlDatasetSource(split.spec, split.path), name=split.name, digest=split.digest)

        def _compute_digest(self) -> str:
            return self.split.digest

        @property
        def profile(self):
            return self.split.profile

        @property
        def schema(self):
            profile = self.split.profile
            if "samples" not in profile:
                return None
            return Schema([TensorSpec(np.dtype(np.float32), (-1, len(profile["leads"]), profile["samples"]),
                                      "signals"),
                           TensorSpec(np.dtype(np.float32), (-1, len(profile["classes"])), "labels")])

        def to_dict(self) -> dict:
            config = super().to_dict()
            config["profile"] = json.dumps(self.profile)
            if self.schema is not None:
                config["schema"] = json.dumps({"mlflow_tensorspec": self.schema.to_dict()})
            return config

    for split in datasets:
        mlflow.log_input(EcgtlDataset(split), context=split.context)


@on_rank_zero
def log_artifacts(folder: str | Path, artifact_path: str) -> None:
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path)


@on_rank_zero
def log_epoch(epoch: int, values: dict[str, float]) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in values.items() if v == v}, step=epoch)


@on_rank_zero
def log_evaluation_report(report: EvaluationReport, artifact_path: str = "evaluation", png: bool = True) -> None:
    """Log a report to the active MLflow run: metrics (stable keys), per-class CSV, calibrators (JSON),
    one self-contained HTML page of figures (plotly.js embedded once) and, where kaleido works, PNGs."""
    import mlflow

    mlflow.log_metrics({key: value for key, value in report.metrics.items() if value == value})  # drop NaN
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report.per_class.to_csv(folder / "per_class.csv", index=False)
        (folder / "calibrators.json").write_text(json.dumps(
            {"primary": report.primary_calibration, **{k: c.to_dict() for k, c in report.calibrators.items()}}))
        (folder / "thresholds.json").write_text(json.dumps(dict(zip(report.classes, report.thresholds.tolist(), strict=True))))
        (folder / "skipped_classes.json").write_text(json.dumps(report.skipped))
        (folder / "macro_classes.json").write_text(json.dumps(
            {"in_macro": [c for c, inside in zip(report.classes, report.per_class["in_macro"], strict=True) if inside],
             "left_out": report.left_out}))
        if report.figures:
            (folder / "report.html").write_text(figures_to_html(list(report.figures.values()), "ecgtl evaluation"),
                                                encoding="utf-8")
            if png:
                try:
                    save_figure(report.figures["reliability"], folder / "reliability.png", scale=1.5)
                except Exception as exc:  # PNG is optional (needs kaleido + Chromium); HTML always is logged
                    (folder / "png_skipped.txt").write_text(str(exc))
        mlflow.log_artifacts(str(folder), artifact_path)


@on_rank_zero
def log_predictions(name: str, record_ids: list[str], labels: np.ndarray, logits: np.ndarray) -> None:
    """Test logits and labels per record, so that later comparisons (paired bootstrap) need no re-inference."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.npz"
        np.savez_compressed(path, record_ids=np.asarray(record_ids, dtype=str), labels=labels, logits=logits)
        mlflow.log_artifact(str(path), "predictions")


@on_rank_zero
def load_predictions(run_id: str, name: str = "test") -> dict[str, np.ndarray]:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"predictions/{name}.npz", dst_path=tmp)
        with np.load(path) as data:
            return {key: data[key] for key in data.files}


@on_rank_zero
def log_model(bundle_dir: Path, input_example: np.ndarray, *, python_model, signature, metadata: dict) -> str:
    """Log the bundle as a pyfunc LoggedModel of the active run, with the ecgtl package as its code (it loads
    where ecgtl is not installed) and its own pip requirements; returns its model URI."""
    import logging
    import warnings

    import mlflow.pyfunc

    import ecgtl

    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")  # numpy input on purpose
    # MLflow warns that a Python object is pickled: that is how this model ships, so keep the log quiet.
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model, artifacts={"bundle": str(bundle_dir)},
                                       input_example=input_example, signature=signature, metadata=metadata,
                                       pip_requirements=runtime_requirements(),
                                       code_paths=[str(Path(ecgtl.__file__).parent)])
    finally:
        pyfunc_logger.setLevel(level)
    return info.model_uri


@on_rank_zero
def register(model_uri: str, name: str, champion_if_first: bool = True, *, description: str = "",
             tags: dict[str, str] | None = None) -> int:
    """Register a model version (with its model card as `description`, and `tags`); `challenger` on it,
    `champion` too when no version holds it yet (unless `champion_if_first` is off: then only the promotion gate
    makes champions). All or nothing."""
    import mlflow

    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, name, tags=tags)
    try:
        if description:
            client.update_model_version(name, version.version, description=description)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        if champion_if_first and version_by_alias(name, CHAMPION) is None:
            client.set_registered_model_alias(name, CHAMPION, version.version)
    except BaseException:
        with contextlib.suppress(Exception):
            client.delete_model_version(name, version.version)
        raise
    return int(version.version)


@on_rank_zero
def model_exists(uri: str) -> bool:
    """Whether `models:/NAME@ALIAS` (or any model URI) resolves in the current store; only a "not found"
    answer means no, any other error (store down, permissions) propagates."""
    import mlflow

    runs.check_model_uri(uri)
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri.removeprefix("models:/").split("@", 1)
        return version_by_alias(name, alias) is not None
    try:
        mlflow.models.get_model_info(uri)
        return True
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise


def download_model(uri: str, folder: Path) -> Path:
    """The model at `uri` downloaded into `folder`. A URI that names nothing (or is malformed: checked before
    anything is fetched or copied, `runs.check_model_uri`) is the user's error; a store that cannot be reached
    is not, and raises as it is. Under torchrun rank 0 downloads and every rank gets the files."""
    runs.check_model_uri(uri)
    if not launched():
        return _download_model(uri, folder)
    name, files = _model_files(uri)
    for relative, data in files.items():
        (Path(folder) / relative).parent.mkdir(parents=True, exist_ok=True)
        (Path(folder) / relative).write_bytes(data)
    return Path(folder) / name


@on_rank_zero
def _model_files(uri: str) -> tuple[str, dict[str, bytes]]:
    """The downloaded model folder's name and its files' bytes (rank 0 fetches, every rank writes them)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _download_model(uri, Path(tmp))
        base = root if root.is_dir() else root.parent
        files = {str(path.relative_to(Path(tmp))): path.read_bytes() for path in base.rglob("*") if path.is_file()}
        return str(root.relative_to(Path(tmp))), files


def _download_model(uri: str, folder: Path) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))
    except Exception as exc:
        user_error = is_not_found(exc) or (isinstance(exc, MlflowException)
                                           and exc.error_code == "INVALID_PARAMETER_VALUE")
        if not user_error:
            raise
        raise EcgtlError(f"{uri}: cannot load model ({str(exc).splitlines()[0]})") from None


@on_rank_zero
def find_finished_run(stage: str, key: str) -> str | None:
    """A FINISHED run of `stage` with this config hash in the current experiment (for reuse), newest first."""
    import mlflow

    active = mlflow.active_run()
    if active:
        experiments = [active.info.experiment_id]
    else:  # the experiment `configure` would choose (MLflow's own default is `Default`, where no stage logs)
        chosen = mlflow.get_experiment_by_name(experiment_name())
        if chosen is None:
            return None
        experiments = [chosen.experiment_id]
    found = mlflow.search_runs(experiment_ids=experiments,
                               filter_string=f"tags.`{runs.STAGE}` = '{stage}' and tags.`{runs.CONFIG_HASH}` = '{key}' "
                                             "and attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return found[0].info.run_id if found else None


@on_rank_zero
def run_info(run_id: str) -> tuple[dict[str, str], dict[str, float]]:
    import mlflow

    run = mlflow.MlflowClient().get_run(run_id)
    return run.data.tags, run.data.metrics


@on_rank_zero
def metric_history(run_id: str, key: str) -> list[float]:
    """A metric's values in step order (per-epoch metrics)."""
    import mlflow

    history = mlflow.MlflowClient().get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@on_rank_zero
def run_seconds(run_id: str) -> float:
    """Wall time of a finished run (end minus start), for benchmark tables."""
    import mlflow

    info = mlflow.MlflowClient().get_run(run_id).info
    return (info.end_time - info.start_time) / 1000 if info.end_time else float("nan")


@on_rank_zero
def stage_runs(stages: tuple[str, ...] = runs.TRAINING_STAGES):
    """FINISHED runs of the given stages in the current experiment as a DataFrame (tags, params, metrics)."""
    import mlflow
    import pandas as pd

    frames = [mlflow.search_runs(filter_string=f"tags.`{runs.STAGE}` = '{stage}' and attributes.status = 'FINISHED'")
              for stage in stages]
    return pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) else pd.DataFrame()


# ------------------------------------------------------------------------------------------------ registry
def filter_value(text: str) -> str:
    """A string literal for an MLflow search filter, never built by pasting a name between quotes: a name with
    an apostrophe (legal in MLflow) is written in double quotes; one with both kinds cannot be searched."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise EcgtlError(f"{text!r}: a name holding both ' and \" cannot be searched in MLflow; rename it")


@on_rank_zero
def model_versions(name: str) -> list:
    """Every version of a registered model; an error naming the model when it has none or does not exist."""
    import mlflow

    try:
        versions = mlflow.MlflowClient().search_model_versions(f"name={filter_value(name)}")
    except Exception as exc:
        if is_not_found(exc):
            versions = []
        else:
            raise
    if not versions:
        raise EcgtlError(f"registered model {name!r} has no versions in {tracking_uri()}")
    return sorted(versions, key=lambda v: int(v.version))


@on_rank_zero
def version_by_alias(name: str, alias: str):
    """The version an alias points to, or None (only a "not found" answer means none)."""
    import mlflow

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


@on_rank_zero
def resolve_version(name: str, reference: str):
    """A version by number or alias; an error when the alias points nowhere or the number does not exist."""
    import mlflow

    model_versions(name)
    if str(reference).isdigit():
        try:
            return mlflow.MlflowClient().get_model_version(name, str(reference))
        except Exception as exc:
            if is_not_found(exc):
                raise EcgtlError(f"{name} has no version {reference}") from None
            raise
    version = version_by_alias(name, reference)
    if version is None:
        raise EcgtlError(f"alias {reference!r} of {name} points to no version")
    return version


@on_rank_zero
def version_description(uri: str) -> str:
    """The registry description (the model card) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    if not uri.startswith("models:/") or ("@" not in uri and uri.count("/") != 2):
        raise EcgtlError(f"{uri}: name a registered version, models:/NAME@ALIAS or models:/NAME/VERSION")
    name, _, reference = uri.removeprefix("models:/").replace("@", "/", 1).partition("/")
    return resolve_version(name, reference).description or ""


@on_rank_zero
def registered_models() -> list[dict]:
    """Every registered model with its versions (number, aliases, run, tags), oldest version first. Aliases
    come from the registered model itself: `search_model_versions` answers with empty `aliases`."""
    import mlflow

    client = mlflow.MlflowClient()
    listed = []
    for model in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(model.name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        versions = client.search_model_versions(f"name={filter_value(model.name)}")
        listed.append({"name": model.name, "versions": [
            {"version": int(v.version), "aliases": sorted(aliases.get(str(v.version), [])), "run_id": v.run_id,
             "tags": dict(v.tags or {})} for v in sorted(versions, key=lambda v: int(v.version))]})
    return listed


@on_rank_zero
def latest_finished_run(stage: str, tags: dict[str, str] | None = None):
    """The newest FINISHED run of `stage` (with these `tags`) in the current experiment, as a row of
    `search_runs`, or None."""
    import mlflow

    wanted = "".join(f" and tags.`{key}` = {filter_value(value)}" for key, value in (tags or {}).items())
    found = mlflow.search_runs(filter_string=f"tags.`{runs.STAGE}` = {filter_value(stage)}{wanted} and "
                                             "attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return None if found.empty else found.iloc[0]


@on_rank_zero
def download_artifact(run_id: str, path: str) -> str:
    """One artifact of a run, downloaded to a new temporary folder; returns its local path."""
    import mlflow

    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tempfile.mkdtemp())


@on_rank_zero
def log_files(paths: list[Path], artifact_path: str) -> None:
    """Log exactly these files (never the folder around them) under `artifact_path` of the active run."""
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), artifact_path)


@on_rank_zero
def move_alias(name: str, alias: str, version: int | str) -> None:
    """Point an alias at a version: one registry update, so some version holds it at every moment."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


@on_rank_zero
def tag_version(name: str, version: int | str, tags: dict[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
