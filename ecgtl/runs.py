"""The run vocabulary: tag keys, stage names, run names and axis tags, in one place (as
`evaluation/report.py` is for metric keys). Stages, tracking and dashboards use these names, never literals.

| tag | value |
|---|---|
| `ecgtl.stage` | `pretrain`, `finetune`, `scratch`, `evaluate`, `main`, `ablation`, `tune`, `trial`, ... |
| `ecgtl.init` | `pretrained` or `scratch` |
| `ecgtl.source`, `ecgtl.target` | short dataset names (`ptbxl`, `g12ec`, a folder name) |
| `ecgtl.label_set`, `ecgtl.fs`, `ecgtl.fraction`, `ecgtl.seed`, `ecgtl.schedule` | the run's data and training |
| `ecgtl.leads`, `ecgtl.domain` | the input pipeline (`all12`/`limb6`/`I,II`..., `time`/`fft_abs`...) |
| `ecgtl.objective` | pretrain runs and their versions: the objective (`supervised`, `contrastive`, `cpc`) |
| `ecgtl.config_hash` | the reuse key of the run's config (`config.reuse_key`) |
| `ecgtl.axis.<name>` | the value of an ablation axis on a cell's run (`ecgtl.axis.target_fraction` = `0.1`) |
| `ecgtl.parent` | the ablation or study run a cell or trial belongs to |
| `ecgtl.model_uri`, `ecgtl.pretrained_uri`, `ecgtl.error` | what the run logged, started from, or failed with |
| `ecgtl.calibration`, `ecgtl.leak` | evaluate: `stored` or `refit` calibration; evaluated records seen in training |
| `ecgtl.label_shift` | evaluate, finetune: the label-shift correction (`none`, `prior`, `em`, `reweight`) |
| `ecgtl.study`, `ecgtl.trial`, `ecgtl.trial_state`, `ecgtl.best_run_id` | tune: the study, a trial's number and fate, the best run |
| `ecgtl.preset`, `ecgtl.cells` | ablation: the preset and the number of cells |
| `ecgtl.dataset.<context>` | on a registered version: `name@digest` of each dataset of its run |
| `ecgtl.model`, `ecgtl.decision`, `ecgtl.reason`, `ecgtl.promotion.*` | promote: the registered model, the gate |

Optuna user attributes on studies and trials (`ecgtl.run_id`, `ecgtl.parent_run_id`, ...) are named here too.
"""

from __future__ import annotations

from collections.abc import Mapping

TAG = "ecgtl."
STAGE, INIT, SOURCE, TARGET = "ecgtl.stage", "ecgtl.init", "ecgtl.source", "ecgtl.target"
LABEL_SET, FS, FRACTION, SEED, SCHEDULE = "ecgtl.label_set", "ecgtl.fs", "ecgtl.fraction", "ecgtl.seed", "ecgtl.schedule"
LEADS, DOMAIN, OBJECTIVE = "ecgtl.leads", "ecgtl.domain", "ecgtl.objective"
CONFIG_HASH, PARENT = "ecgtl.config_hash", "ecgtl.parent"
MODEL_URI, PRETRAINED_URI, ERROR = "ecgtl.model_uri", "ecgtl.pretrained_uri", "ecgtl.error"
# an imported starting point (`torch:PATH`, `hf:...`): the file's SHA-256 or the snapshot's commit, the layout its
# weights were read in, the licence its metadata names
PRETRAINED_DIGEST, PRETRAINED_LAYOUT = "ecgtl.pretrained_digest", "ecgtl.pretrained_layout"
PRETRAINED_LICENCE = "ecgtl.pretrained_licence"
CALIBRATION, LEAK = "ecgtl.calibration", "ecgtl.leak"  # evaluate: stored or refit calibration; records seen
LABEL_SHIFT = "ecgtl.label_shift"
STUDY, TRIAL_NUMBER, TRIAL_STATE, BEST_RUN_ID = "ecgtl.study", "ecgtl.trial", "ecgtl.trial_state", "ecgtl.best_run_id"
PRESET, CELLS = "ecgtl.preset", "ecgtl.cells"
MODEL, DECISION, REASON, PROMOTION_PREFIX = "ecgtl.model", "ecgtl.decision", "ecgtl.reason", "ecgtl.promotion."
AXIS_PREFIX = "ecgtl.axis."
DATASET_PREFIX = "ecgtl.dataset."  # on a registered version: `ecgtl.dataset.training` = `g12ec/train@<digest>`
MLFLOW_RUN_NAME, MLFLOW_PARENT = "mlflow.runName", "mlflow.parentRunId"

# Stage names: the values of `ecgtl.stage`.
PRETRAIN, FINETUNE, SCRATCH, EVALUATE, MAIN = "pretrain", "finetune", "scratch", "evaluate", "main"
ABLATION, TUNE, TRIAL, PROMOTE, DASHBOARD = "ablation", "tune", "trial", "promote", "dashboard"
# Stages whose runs train a model (and so carry the data/training tags above).
TRAINING_STAGES = (PRETRAIN, FINETUNE, SCRATCH)

# Optuna user attributes: a study's (the leader's run, config and budget) and a trial's (its run, its fate).
PARENT_RUN_ID_ATTR, TUNE_CONFIG_ATTR, TARGET_TRIALS_ATTR = "ecgtl.parent_run_id", "ecgtl.tune_config", "ecgtl.target_trials"
SPACE_ATTR = "ecgtl.space"
RUN_ID_ATTR, ERROR_ATTR, NOTE_ATTR = "ecgtl.run_id", "ecgtl.error", "ecgtl.note"
TASK_ATTR, READY_ATTR, WORKER_ATTR = "ecgtl.task", "ecgtl.ready", "ecgtl.worker"


def dataset_tag(context: str) -> str:
    return f"{DATASET_PREFIX}{context}"


def promotion_tag(key: str) -> str:
    return f"{PROMOTION_PREFIX}{key}"


def axis_tag(name: str) -> str:
    return f"{AXIS_PREFIX}{name}"


def axis_tags(axes: Mapping[str, object]) -> dict[str, str]:
    return {axis_tag(name): format_value(value) for name, value in axes.items()}


def format_value(value: object) -> str:
    """How a config or axis value is written in tags and run names (floats without trailing zeros)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(stage: str, architecture: str, target: str, fraction: float, seed: int,
             axes: Mapping[str, object] | None = None) -> str:
    """e.g. `finetune-xresnet1d50-g12ec-f0.10-s0`, plus the non-default ablation axes (`-fs50-fft_abs`)."""
    name = f"{stage}-{architecture}-{target}-f{fraction:.2f}-s{seed}"
    for axis, value in (axes or {}).items():
        if axis in ("target_fraction", "seed", "init"):
            continue  # already in the name
        if axis in ("source", "target"):
            from ecgtl.data.spec import parse_spec

            value = parse_spec(str(value)).label  # a spec's few characters, not its path
        name += f"-{axis_short(axis)}{format_value(value)}"
    return name


_AXIS_SHORT = {"source_fraction": "sf", "fs": "fs", "domain": "", "leads": "", "objective": "", "source": "from-",
               "target": "on-", "target_fs": "rec", "fs_augment": "aug", "label_shift": "ls-"}


def axis_short(axis: str) -> str:
    return _AXIS_SHORT.get(axis, f"{axis}=")


def metric_column(key: str) -> str:
    """The column of a metric in `mlflow.search_runs` frames."""
    return f"metrics.{key}"


def tag_column(key: str) -> str:
    """The column of a tag in `mlflow.search_runs` frames."""
    return f"tags.{key}"


# ------------------------------------------------------------------------------------------------ model URIs
MODEL_URI_FORMS = ("models:/NAME@ALIAS, models:/NAME/VERSION, models:/MODEL_ID, runs:/RUN_ID/PATH, a model folder "
                   "or an artifact store URI (s3://, gs://, mlflow-artifacts:/ ...)")
# Artifact stores MLflow downloads a model folder from (plain http is not one: MLflow serves artifacts over HTTP
# as mlflow-artifacts:/ URIs).
REMOTE_SCHEMES = ("s3", "gs", "wasbs", "abfss", "hdfs", "dbfs", "mlflow-artifacts")
# Starting points that are not ecgtl models: checkpoint files of a known layout, Hugging Face models
# (models/imported.py reads them)
IMPORTED_SCHEMES = ("torch", "hf")


def is_imported_uri(uri: str) -> bool:
    """Whether a starting point names an encoder from elsewhere (`torch:PATH`, `hf:...`), not an ecgtl model."""
    return ":" in str(uri) and str(uri).partition(":")[0] in IMPORTED_SCHEMES


def check_starting_point(uri: str) -> None:
    """The form of a fine-tuning's `pretrained`: an ecgtl model URI, `torch:PATH` or `hf:...` (looked at later,
    still before any data are read)."""
    from pathlib import Path

    from ecgtl.errors import EcgtlError

    if is_imported_uri(uri):
        scheme, _, reference = str(uri).partition(":")
        if not reference.strip():
            raise EcgtlError(f"{uri!r}: names nothing (torch:PATH, hf:ORG/NAME[@REVISION] or hf:FOLDER)")
        if scheme == "torch" and not Path(reference).expanduser().is_file():
            raise EcgtlError(f"{uri}: no such checkpoint file")
        return
    check_model_uri(uri)


def check_model_uri(uri: str) -> None:
    """The form of a model URI, checked before anything is looked up, downloaded or copied: one line naming what
    is wrong. A local folder (a path or `file://`) must hold an ecgtl model itself (an `MLmodel` file with the
    bundle beside it, or a bare bundle): a home folder is refused here, not copied first."""
    from pathlib import Path
    from urllib.parse import urlparse

    from ecgtl.errors import EcgtlError

    text = str(uri).strip()
    scheme = text.partition(":")[0] if ":" in text else ""
    if scheme == "models":
        body = text.removeprefix("models:/")
        name, at, reference = body.partition("@") if "@" in body else body.partition("/")
        if not text.startswith("models:/") or not name or (at and not reference) or "/" in reference:
            raise EcgtlError(f"{text!r}: not a model URI; use {MODEL_URI_FORMS}")
        return
    if scheme == "runs":
        run_id, _, path = text.removeprefix("runs:/").partition("/")
        if not text.startswith("runs:/") or not run_id or not path:
            raise EcgtlError(f"{text!r}: a runs:/ URI names a run and a path in it (runs:/RUN_ID/model)")
        return
    if scheme in REMOTE_SCHEMES:
        if not urlparse(text).path.strip("/"):
            raise EcgtlError(f"{text!r}: names no model folder in the store")
        return
    if scheme not in ("", "file") and not Path(text).exists():
        raise EcgtlError(f"{text!r}: unknown scheme {scheme + ':'!r}; use {MODEL_URI_FORMS}")
    folder = Path(urlparse(text).path if scheme == "file" else text).expanduser()
    if not folder.is_dir():
        raise EcgtlError(f"{folder}: no such model folder" if not folder.exists() else f"{folder}: not a model folder")
    if not ((folder / "MLmodel").is_file() or (folder / "bundle.json").is_file()):
        raise EcgtlError(f"{folder}: not an ecgtl model folder (no MLmodel or bundle.json in it)")
