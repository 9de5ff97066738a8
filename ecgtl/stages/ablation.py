"""The ablation stage: the study's experiments as one resumable, parallel grid over named axes.

A grid names values for axes (`AXES`); every combination is a *cell*: one fine-tuning (`init=pretrained`) or
training from scratch (`init=scratch`) through the normal stages, as a child run of one `ablation` parent run,
tagged `ecgtl.axis.<name>`. Cells never register models.

- `target_fraction`, `source_fraction`: nested, stratified subsets of the target / source training split;
- `fs`: pretraining and fine-tuning at the same rate (the cache resamples the records);
- `domain`: `time` or the per-window rFFT magnitude / real / imaginary part; `leads`: any lead selection;
- `init`: `pretrained` and `scratch` cells share data, splits and seeds (pairs for the transfer gain);
- `seed`: fine-tuning seed (head initialisation, batches, dropout); 3 seeds by default (`seeds`);
- only where a grid names them (`OPTIONAL_AXES`): `source`, `target` (dataset specs: the transfer matrix,
  `sources`/`targets`), `target_fs` (the rate target records arrive at), `fs_augment` (pretraining rate
  augmentation), `label_shift` (`finetune.label_shift`; pretrained cells then reuse the source head).
Scratch cells ignore the source axes (`source`, `source_fraction`, `objective`, `fs_augment`) and
`label_shift`. A pretraining is shared by every cell with the same source configuration (`source_fraction`,
`fs`, `domain`, `leads`; pretraining seed 0): its reuse key finds it, so it is never trained twice, also
across re-runs.

Reuse key of a cell: `config.reuse_key` of its finetune config, with the pretrained model's URI in it, so a
cell is the same cell only on the same pretrained model. Re-running an ablation skips FINISHED cells and runs
failed or missing ones; a failed cell is recorded (FAILED run with its error, and in `cells.csv`) and the
others go on.

Execution: `jobs=1` runs cells in this process (nested runs). `jobs=N` creates an Optuna study on a journal
file in the cache folder and runs N worker processes on it; `storage=URL` + `study_name` puts the queue on a
shared database (e.g. PostgreSQL), and more workers join from other machines with `ecgtl ablation-worker`
(same storage, study name and MLflow tracking server). See `ecgtl.stages.queue`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, replace

from ecgtl import runs, tracking
from ecgtl.config import build, check_choice, check_options, flatten, reuse_key
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.files import load_yaml
from ecgtl.inputs import leads_label, parse_leads
from ecgtl.redaction import redact
from ecgtl.runs import check_starting_point, is_imported_uri
from ecgtl.stages.common import StageResult, refuse_torchrun
from ecgtl.stages.configs import (
    AXES,
    AXIS_DEFAULTS,
    EXTRA_PRESETS,
    FS_AUGMENT_OFF,
    INITS,
    OPTIONAL_AXES,
    OWN_PRETRAINING,
    PRESETS,
    PRETRAINED_INITS,
    SOURCE_AXES,
    AblationConfig,
    DataConfig,
    FinetuneConfig,
    PretrainConfig,
    Sizing,
)
from ecgtl.stages.finetune import finetune, scratch_config
from ecgtl.stages.pretrain import pretrain
from ecgtl.stages.reuse import pretrained_uri, reuse_or_run
from ecgtl.training.config import TrainConfig

STAGE = runs.ABLATION


# ------------------------------------------------------------------------------------------------ the grid
# The config field each axis sets in a cell: its values are read and checked as that field's (declared choices,
# ranges, types), so an axis accepts exactly what the option does.
AXIS_FIELDS: dict[str, tuple[type, str]] = {
    "target_fraction": (DataConfig, "fraction"), "source_fraction": (DataConfig, "fraction"),
    "fs": (DataConfig, "fs"), "target_fs": (DataConfig, "record_fs"), "domain": (DataConfig, "domain"),
    "objective": (PretrainConfig, "objective"), "label_shift": (FinetuneConfig, "label_shift"),
    "init": (FinetuneConfig, "init"), "seed": (TrainConfig, "seed"),
}


def _axis_value(axis: str, text: str):
    if axis in ("source", "target"):  # normalised: one dataset written two ways is one value, one pretraining
        return str(parse_spec(text))
    if axis == "fs_augment":
        if text != FS_AUGMENT_OFF:
            PretrainConfig(fs_augment=text).fs_augment_range  # noqa: B018 (parses and checks the range)
        return text
    if axis == "leads":
        return leads_label(parse_leads(text))
    if axis == "starting_point":
        if text != OWN_PRETRAINING:
            if not is_imported_uri(text):
                raise EcgtlError(f"axis starting_point: {text!r} is neither {OWN_PRETRAINING} nor torch:PATH or hf:...")
            check_starting_point(text)
        return text
    config_class, name = AXIS_FIELDS[axis]
    try:
        value = getattr(build(config_class, {name: text}), name)
        check_options(replace(config_class(), **{name: value}))
        if config_class is DataConfig:
            replace(DataConfig(), **{name: value}).validate()
    except EcgtlError as exc:  # the option's own message, said of the axis
        message = str(exc).removeprefix(f"parameter {name}: ").removeprefix(f"{name} ")
        raise EcgtlError(f"axis {axis}: {message}") from None
    return value


# Axes whose values hold commas themselves (lead lists, rate ranges, specs): their values are separated by `|`.
BAR_SEPARATED = ("leads", "fs_augment", "source", "target", "starting_point")
_SPEC_START = re.compile(r",\s*(?=(?:synthetic|ptbxl|cinc):)")


def split_specs(text: str) -> tuple[str, ...]:
    """`--sources a,b`: specs separated by commas (a comma inside a spec's options stays), or by `|`."""
    parts = text.split("|") if "|" in text else _SPEC_START.split(text)
    return tuple(p.strip() for p in parts if p.strip())


def other_dataset(spec: str) -> str:
    """The transfer matrix's second source (target): the other side's synthetic layout with another seed and no
    noise, so a matrix without `--sources`/`--targets` still crosses layouts, rates, priors and noise."""
    parsed = parse_spec(spec)
    if parsed.kind != "synthetic":
        return spec
    options = {**parsed.options, "seed": str(int(parsed.options.get("seed", 0)) + 7), "noise": "0"}
    return f"synthetic:{parsed.target}?" + "&".join(f"{k}={v}" for k, v in options.items())


def parse_axes(text: str) -> dict[str, tuple]:
    """"target_fraction=1,0.5;seed=0,1" -> {"target_fraction": (1.0, 0.5), "seed": (0, 1)}. Lead selections
    contain commas, so `leads` values (and `BAR_SEPARATED`'s) are separated by `|`: "leads=all12|limb6|I,II|V1"."""
    axes: dict[str, tuple] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition("=")
        name = name.strip()
        if not sep or name not in AXES:
            raise EcgtlError(f"axis {part!r}: write NAME=V1,V2 with NAME one of {', '.join(AXES)}")
        items = [v.strip() for v in values.split("|" if name in BAR_SEPARATED else ",") if v.strip()]
        if not items:
            raise EcgtlError(f"axis {name}: no values")
        axes[name] = tuple(dict.fromkeys(_axis_value(name, v) for v in items))
    return axes


def load_grid_file(path: str) -> dict[str, tuple]:
    """A YAML grid: `axes: {target_fraction: [1, 0.1], leads: [all12, "I,II"], seed: [0, 1, 2]}`."""
    data = load_yaml(path, "grid file")
    if not isinstance(data, dict) or not isinstance(data.get("axes"), dict):
        raise EcgtlError(f"{path}: expected a mapping with 'axes: {{name: [values]}}'")
    axes = {}
    for name, values in data["axes"].items():
        check_choice(f"{path}: axis", name, AXES)
        values = values if isinstance(values, list) else [values]
        if not values or any(isinstance(v, (list, dict)) for v in values):
            raise EcgtlError(f"{path}: axis {name}: expected a list of values, got {values!r}"[:300])
        axes[name] = tuple(dict.fromkeys(_axis_value(name, str(v)) for v in values))
    return axes


def grids(config: AblationConfig) -> list[dict[str, tuple]]:
    """The grids an ablation runs: the preset's (all presets for `all`), or the file's, with overrides."""
    if config.grid_file:
        chosen = [load_grid_file(config.grid_file)]
    elif config.preset == "all":
        chosen = [dict(axes) for axes in PRESETS.values()]
    elif config.preset == "custom":
        chosen = [{}]
    else:
        chosen = [dict({**PRESETS, **EXTRA_PRESETS}[config.preset])]
    overrides = parse_axes(config.axes)
    for axis, text in (("source", config.sources), ("target", config.targets)):
        if text:
            specs = tuple(dict.fromkeys(_axis_value(axis, spec) for spec in split_specs(text)))
            if not specs:
                raise EcgtlError(f"{axis}s {text!r}: names no dataset spec")
            overrides[axis] = specs
    if config.starting_points:
        parts = config.starting_points.split("|" if "|" in config.starting_points else ",")
        overrides["starting_point"] = tuple(dict.fromkeys(_axis_value("starting_point", p.strip())
                                                          for p in parts if p.strip()))
    if config.preset == "transfer-matrix":
        size = config.sizing()
        for axis, specs in (("source", (size.source, other_dataset(size.target))),
                            ("target", (size.target, other_dataset(size.source)))):
            overrides.setdefault(axis, tuple(dict.fromkeys(_axis_value(axis, spec) for spec in specs)))
    return [{**grid, **overrides} for grid in chosen]


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis values, its finetune config, and (pretrained) its pretraining."""

    axes: dict
    finetune: FinetuneConfig
    pretrain: PretrainConfig | None

    @property
    def stage(self) -> str:
        return runs.FINETUNE if self.finetune.init in PRETRAINED_INITS else runs.SCRATCH


def _source_spec(spec: str, fs: float) -> str:
    """Synthetic PTB-XL writes only its 100 Hz files by default; higher rates need its 500 Hz files."""
    parsed = parse_spec(spec)
    if parsed.kind == "synthetic" and parsed.target == "ptbxl" and fs > 100 and "rates" not in parsed.options:
        return f"{spec}&rates=100,500" if "?" in spec else f"{spec}?rates=100,500"
    return spec


def expand(config: AblationConfig) -> list[Cell]:
    """Every cell of every grid, each once (scratch and random_frozen cells do not depend on source axes)."""
    size = config.sizing()
    cells: dict[str, Cell] = {}
    for grid in grids(config):
        values = {axis: grid.get(axis, (AXIS_DEFAULTS[axis],) if axis in AXIS_DEFAULTS else ()) for axis in AXES}
        values.update({axis: grid.get(axis, (None,)) for axis in OPTIONAL_AXES})
        values["init"] = grid.get("init", INITS)
        values["seed"] = grid.get("seed", tuple(range(config.seeds)))
        for combination in itertools.product(*(values[axis] for axis in AXES)):
            axes = dict(zip(AXES, combination, strict=True))
            if axes["init"] not in PRETRAINED_INITS:
                axes.update({axis: None for axis in ("source", "source_fraction", "objective", "fs_augment",
                                                     "label_shift", "starting_point")})
            key = json.dumps(axes, sort_keys=True, default=str)
            if key not in cells:
                cells[key] = _cell(axes, size)
    return list(cells.values())


def _cell(axes: dict, size: Sizing) -> Cell:
    """A cell's configs: the stage defaults with the sizing and the cell's axes (nothing retyped)."""
    fs, leads, domain = float(axes["fs"]), axes["leads"], axes["domain"]
    inputs = {"fs": fs, "leads": leads, "domain": domain, "label_set": size.label_set, "scaling": size.scaling}
    pre = None
    imported = axes.get("starting_point") not in (None, OWN_PRETRAINING)
    if axes["init"] in PRETRAINED_INITS and not imported:
        base = PretrainConfig()
        augment = axes.get("fs_augment")
        pre = replace(base, data=replace(base.data, spec=_source_spec(axes.get("source") or size.source, fs),
                                         fraction=float(axes["source_fraction"]), **inputs),
                      model=size.model, train=replace(base.train, epochs=size.pretrain_epochs,
                                                      batch_size=size.batch_size, explain_examples=0),
                      n_bootstrap=size.n_bootstrap, objective=axes.get("objective") or base.objective,
                      probe_epochs=size.probe_epochs,
                      fs_augment="" if augment in (None, FS_AUGMENT_OFF) else augment)
    base = FinetuneConfig()
    shift = axes.get("label_shift")
    tuned = replace(base, data=replace(base.data, spec=axes.get("target") or size.target,
                                       fraction=float(axes["target_fraction"]), record_fs=axes.get("target_fs") or 0.0,
                                       **inputs),
                    init=axes["init"], pretrained=axes["starting_point"] if imported else "",
                    model="" if imported else size.model, label_shift=shift or base.label_shift,
                    head="reuse" if shift is not None else base.head,
                    train=replace(base.train, epochs=size.finetune_epochs, batch_size=size.batch_size,
                                  seed=int(axes["seed"]), explain_examples=0), n_bootstrap=size.n_bootstrap)
    if axes["init"] == "scratch":
        tuned = scratch_config(tuned)
    elif axes["init"] == "random_frozen":
        tuned = replace(scratch_config(tuned), init="random_frozen")
    return Cell(axes, tuned, pre)


# ------------------------------------------------------------------------------------------------ tasks
def tasks_of(cells: list[Cell]) -> list[dict]:
    """JSON tasks: every distinct pretraining first, then the cells (that order is also the queue's)."""
    pretrainings: dict[str, dict] = {}
    for cell in cells:
        if cell.pretrain is not None:
            key = reuse_key(cell.pretrain)
            source_axes = {axis: cell.axes[axis] for axis in SOURCE_AXES}
            pretrainings.setdefault(key, {"kind": runs.PRETRAIN, "key": key, "flat": flatten(cell.pretrain),
                                          "axes": source_axes})
    cell_tasks = [{"kind": "cell", "stage": cell.stage, "flat": flatten(cell.finetune), "axes": cell.axes,
                   "pretrain_key": reuse_key(cell.pretrain) if cell.pretrain else None} for cell in cells]
    return [*pretrainings.values(), *cell_tasks]


def _axes_for_tags(axes: dict) -> dict:
    return {axis: value for axis, value in axes.items() if value is not None}


def run_task(task: dict, *, parent_run_id: str | None = None, nested: bool = False, wait_s: float = 0.0) -> StageResult:
    """Run (or reuse) one task; in-process cells are `nested` under the active ablation run, worker processes
    attach to `parent_run_id`."""
    axes = _axes_for_tags(task["axes"])
    if task["kind"] == runs.PRETRAIN:
        config = build(PretrainConfig, task["flat"])
        return reuse_or_run(runs.PRETRAIN, config, lambda: pretrain(config, nested=nested, register=False, axes=axes,
                                                                  parent_run_id=parent_run_id))
    config = build(FinetuneConfig, task["flat"])
    if task["pretrain_key"]:
        config = replace(config, pretrained=pretrained_uri(task["pretrain_key"], wait_s))
    return reuse_or_run(task["stage"], config, lambda: finetune(config, nested=nested, register=False, axes=axes,
                                                                 parent_run_id=parent_run_id))


def prepare_caches(cells: list[Cell]) -> None:
    """Build every cache the cells need once, in this process, before any worker starts."""
    from ecgtl.stages.common import load_data

    seen = set()
    for cell in cells:
        for data in [cell.finetune.data] + ([cell.pretrain.data] if cell.pretrain else []):
            key = data.prepare_config()
            if key not in seen:
                seen.add(key)
                load_data(data, 0)


# ------------------------------------------------------------------------------------------------ execution
@dataclass
class CellOutcome:
    task: dict
    status: str  # finished, reused, failed
    run_id: str | None
    error: str = ""


def _run_serially(tasks: list[dict]) -> list[CellOutcome]:
    outcomes = []
    for position, task in enumerate(tasks, 1):
        label = task["kind"] if task["kind"] == runs.PRETRAIN else task["stage"]
        print(f"[{position}/{len(tasks)}] {label} {_axes_for_tags(task['axes'])}", file=sys.stderr, flush=True)
        try:
            result = run_task(task, nested=True)
            outcomes.append(CellOutcome(task, "reused" if result.reused else "finished", result.run_id))
        except Exception as exc:  # a failed cell is recorded; the others go on (Ctrl-C still stops everything)
            print(redact(f"  failed: {type(exc).__name__}: {exc}"), file=sys.stderr, flush=True)
            outcomes.append(CellOutcome(task, "failed", None, f"{type(exc).__name__}: {exc}"))
    return outcomes


def _worker_main(storage_url: str, study_name: str, parent_run_id: str, threads: int) -> int:
    """A worker process: pop tasks until the queue is empty."""
    import torch

    from ecgtl.stages import queue

    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run` the parent's run id is in the environment
    torch.set_num_threads(max(1, threads))
    study = queue.join_queue(queue.open_storage(storage_url), study_name)  # ready: the store exists by now
    tracking.configure()

    def run(task: dict) -> float:
        result = run_task(task, parent_run_id=parent_run_id, wait_s=4 * 3600)
        return float(result.metrics.get("test_macro_auc", float("nan")))

    return queue.work(study, run)


def _run_on_queue(tasks: list[dict], config: AblationConfig, parent_run_id: str) -> list[CellOutcome]:

    from ecgtl.paths import cache_root
    from ecgtl.stages import queue

    storage_url = config.storage or str(cache_root() / "queues" / f"ablation-{parent_run_id}.log")
    study_name = config.study_name or f"ablation-{parent_run_id}"
    storage = queue.open_storage(storage_url)
    study = queue.create_queue(storage, study_name, tasks, {runs.PARENT_RUN_ID_ATTR: parent_run_id})
    parent_run_id = study.user_attrs.get(runs.PARENT_RUN_ID_ATTR, parent_run_id)
    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    queue.run_processes(_worker_main, (storage_url, study_name, parent_run_id, threads), config.jobs,
                        after=lambda: queue.wait_for_other_workers(study))
    return _outcomes_from_study(study, tasks)


def _outcomes_from_study(study, tasks: list[dict]) -> list[CellOutcome]:
    from ecgtl.stages import queue

    by_task: dict[str, CellOutcome] = {}
    for trial in study.get_trials(deepcopy=False):
        task = queue.task_of(trial)
        if task is None:
            continue
        identity = json.dumps(task, sort_keys=True)
        status = {"COMPLETE": "finished", "FAIL": "failed"}.get(trial.state.name, trial.state.name.lower())
        by_task[identity] = CellOutcome(task, status, None, trial.user_attrs.get(runs.ERROR_ATTR, ""))
    return [by_task.get(json.dumps(t, sort_keys=True), CellOutcome(t, "missing", None)) for t in tasks]


def ablation(config: AblationConfig) -> dict:
    """Run (or resume) an ablation; logs the results to the parent run. Returns the result tables."""
    from ecgtl.stages.ablation_results import collect, log_results

    refuse_torchrun("ablation")
    config.validate()
    cells = expand(config)  # every axis value checked before the store is touched
    tracking.configure()
    tasks = tasks_of(cells)
    n_pretrain = sum(t["kind"] == runs.PRETRAIN for t in tasks)
    print(f"ablation {config.preset}{' (quick)' if config.quick else ''}: {len(cells)} cells, {n_pretrain} "
          f"pretraining(s), jobs {config.jobs}", file=sys.stderr)
    prepare_caches(cells)
    tags = {runs.STAGE: STAGE, runs.CONFIG_HASH: reuse_key(config), runs.PRESET: config.preset,
            runs.CELLS: str(len(cells))}
    name = f"{STAGE}-{config.preset}{'-quick' if config.quick else ''}"
    with tracking.stage_run(name, tags, flatten(config)) as parent_run_id:
        if config.jobs == 1 and not config.storage:
            outcomes = _run_serially(tasks)
        else:
            outcomes = _run_on_queue(tasks, config, parent_run_id)
        results = collect(cells, outcomes)
        log_results(results, config)
        failed = [o for o in outcomes if o.status != "finished" and o.status != "reused"]
        print(f"ablation: {len(outcomes) - len(failed)} of {len(outcomes)} tasks finished"
              + (f", {len(failed)} failed (re-run the same command to retry them)" if failed else ""), file=sys.stderr)
    return results


def ablation_worker(storage: str, study_name: str) -> int:
    """Join a running ablation's queue from another machine (same storage, study name and tracking server)."""
    import torch

    from ecgtl.stages import queue

    study = queue.join_queue(queue.open_storage(storage), study_name)
    parent_run_id = study.user_attrs.get(runs.PARENT_RUN_ID_ATTR)
    return _worker_main(storage, study_name, parent_run_id, torch.get_num_threads())
