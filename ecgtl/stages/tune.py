"""Tune fine-tuning with Optuna: unfreezing schedule, its parameters, learning rates and regularisation.

The objective is the best validation macro AUC of a fine-tune of the pretrained model on the target's
training split; test records are never looked at during the search. Each trial is a child run (stage
`trial`) with its parameters, per-epoch metrics, validation logits, duration and its Optuna state as the tag
`ecgtl.trial_state` (COMPLETE, PRUNED, FAIL); a pruned trial's run ends FINISHED. Trials never register
models. At the end the best configuration is trained once more through the normal `finetune` stage, evaluated
on test once with the full report, and registered as a `challenger` version of `ecgtl-finetuned` (never
`champion`: that is the promotion gate's job).

Search space (`SearchSpace`, dotted options `--space.lr 1e-4,3e-2` or a YAML file with the same keys):
schedule kind; head-only epochs (two_stage), epochs per unfreezing step (gradual, chain_thaw), groups per step
(gradual), each only where its schedule uses it; base lr (log), discriminative decay, head lr multiplier (log),
weight decay (log), head dropout, batch size, frozen-BN mode. A single value fixes a parameter.

Sampler: TPE with an explicit seed and every option set explicitly (Optuna changed its defaults between
versions). Pruner: Hyperband (min 1 epoch, max the trial's epochs, reduction factor 3: factors 2 and 4 pruned less or lost the
best trial in benchmarks/bench_tune.py) by default, `median`
(5 startup trials, 1 warm-up epoch) or `none`; every epoch reports through the trainer's after-epoch hook.

Storage: an SQLite file beside an `sqlite:///` MLflow store (`optuna.db`), else in the cache folder;
`storage=postgresql+psycopg2://...` (or a journal file) for many workers. `workers=N` runs N processes on one
study, created once before they start; `ecgtl tune-worker --storage URL --study-name NAME` joins from another
machine. The same study name continues a study; one with another search space or direction is refused. A
worker that dies stops its heartbeat; its trial turns FAIL (and its run FAILED) when another worker notices.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ecgtl import runs, tracking
from ecgtl.config import flatten, reuse_key
from ecgtl.data.sources import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.files import load_yaml
from ecgtl.redaction import redact
from ecgtl.stages import queue
from ecgtl.stages.common import discard_checkpoint, fit_pipeline, fit_step, load_data
from ecgtl.stages.configs import PRUNERS, SearchSpace, TuneConfig  # noqa: F401 (re-exported)
from ecgtl.stages.finetune import finetune, starting_point
from ecgtl.training.unfreeze import SCHEDULES

STAGE, TRIAL_STAGE = "tune", "trial"
TRIAL_STATE = "ecgtl.trial_state"
SPACE_ATTR = "ecgtl.space"


_FLOAT_RANGES = {"lr": True, "decay": False, "head_lr_mult": True, "weight_decay": True, "dropout": False}
_INT_RANGES = ("head_epochs", "epochs_per_stage", "groups_per_stage")


@dataclass(frozen=True)
class ParsedSpace:
    schedules: tuple[str, ...]
    floats: dict[str, tuple[float, float, bool]]  # name -> (low, high, log)
    ints: dict[str, tuple[int, int]]
    batch_sizes: tuple[int, ...]
    frozen_bn: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _numbers(name: str, text: str, kind: type) -> tuple:
    try:
        values = tuple(kind(float(v)) if kind is int else kind(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise EcgtlError(f"space.{name}: {text!r} is not a list of numbers") from None
    if not 1 <= len(values) <= 2:
        raise EcgtlError(f"space.{name}: give `low,high` or one value, got {text!r}")
    return values if len(values) == 2 else values * 2


def parse_space(space: SearchSpace) -> ParsedSpace:
    """Validate a search space; every problem is one clear error before any trial starts."""
    schedules = tuple(s.strip() for s in space.schedules.split(",") if s.strip())
    unknown = [s for s in schedules if s not in SCHEDULES]
    if not schedules or unknown:
        raise EcgtlError(f"space.schedules: {', '.join(unknown) or 'none given'}; choose from {', '.join(SCHEDULES)}")
    floats = {}
    for name, log in _FLOAT_RANGES.items():
        low, high = _numbers(name, getattr(space, name), float)
        if low > high or (log and low <= 0) or not (math.isfinite(low) and math.isfinite(high)):
            raise EcgtlError(f"space.{name}: need finite low <= high{' and low > 0 (log scale)' if log else ''}, "
                             f"got {getattr(space, name)!r}")
        floats[name] = (low, high, log)
    if floats["decay"][0] < 1 or floats["dropout"][1] >= 1 or floats["dropout"][0] < 0:
        raise EcgtlError("space: decay must be >= 1 and dropout within [0, 1)")
    ints = {}
    for name in _INT_RANGES:
        low, high = _numbers(name, getattr(space, name), int)
        if low < 1 or low > high:
            raise EcgtlError(f"space.{name}: need 1 <= low <= high, got {getattr(space, name)!r}")
        ints[name] = (low, high)
    try:
        batch_sizes = tuple(int(v) for v in space.batch_size.split(",") if v.strip())
    except ValueError:
        raise EcgtlError(f"space.batch_size: {space.batch_size!r} is not a list of integers") from None
    if not batch_sizes or min(batch_sizes) < 2:
        raise EcgtlError(f"space.batch_size: integers of at least 2, got {space.batch_size!r}")
    frozen_bn = tuple(v.strip() for v in space.frozen_bn.split(",") if v.strip())
    if not frozen_bn or set(frozen_bn) - {"eval", "train"}:
        raise EcgtlError(f"space.frozen_bn: eval and/or train, got {space.frozen_bn!r}")
    return ParsedSpace(schedules, floats, ints, batch_sizes, frozen_bn)


def load_space_file(path: str, base: SearchSpace) -> SearchSpace:
    data = load_yaml(path, "search space file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise EcgtlError(f"{path}: a search space file is a mapping (schedules: ..., lr: [low, high]), "
                         f"not a {type(data).__name__}")
    unknown = set(map(str, data)) - {f.name for f in SearchSpace.__dataclass_fields__.values()}
    if unknown:
        raise EcgtlError(f"{path}: unknown search space keys {', '.join(sorted(unknown))}")
    if any(isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v))
           for v in data.values()):
        raise EcgtlError(f"{path}: search space values are a number, a word or a flat list")
    as_text = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in data.items()}
    return replace(base, **as_text)


def suggest(trial, space: ParsedSpace) -> dict:
    """TrainConfig fields for one trial; a schedule's own parameters are suggested only under it."""
    def number(name: str):
        low, high, log = space.floats[name]
        return low if low == high else trial.suggest_float(name, low, high, log=log)

    def integer(name: str):
        low, high = space.ints[name]
        return low if low == high else trial.suggest_int(name, low, high)

    def choice(name: str, options: tuple):
        return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))

    schedule = choice("schedule", space.schedules)
    params = {"schedule": schedule, "lr": number("lr"), "decay": number("decay"),
              "head_lr_mult": number("head_lr_mult"), "weight_decay": number("weight_decay"),
              "dropout": number("dropout"), "batch_size": choice("batch_size", space.batch_sizes),
              "frozen_bn": choice("frozen_bn", space.frozen_bn), "epochs_per_stage": 1, "groups_per_stage": 1}
    if schedule == "two_stage":
        params["epochs_per_stage"] = integer("head_epochs")
    elif schedule in ("gradual", "chain_thaw"):
        params["epochs_per_stage"] = integer("epochs_per_stage")
        if schedule == "gradual":
            params["groups_per_stage"] = integer("groups_per_stage")
    if schedule == "full":
        params["decay"] = 1.0 if space.floats["decay"][0] <= 1.0 else params["decay"]
    return params


def default_storage() -> str:
    """`optuna.db` beside an sqlite MLflow store, else in the cache folder."""
    from ecgtl.paths import cache_root

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).expanduser().resolve()
        return f"sqlite:///{database.with_name('optuna.db')}"
    (cache_root()).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{cache_root() / 'optuna.db'}"


def make_sampler(seed: int):
    """TPE with every option that changed between Optuna versions set explicitly."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, n_ei_candidates=24, multivariate=False,
                                      group=False, consider_prior=True, prior_weight=1.0, consider_magic_clip=True,
                                      consider_endpoints=False, constant_liar=True, warn_independent_sampling=False)


def make_pruner(name: str, epochs: int, reduction_factor: int = 3):
    import optuna

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                              reduction_factor=reduction_factor)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1, interval_steps=1)
    return optuna.pruners.NopPruner()


def _mark_stale_trial_failed(study, trial) -> None:
    """Storage callback for a trial whose worker died: its MLflow run ends FAILED with the state tag."""
    run_id = trial.user_attrs.get("ecgtl.run_id")
    if run_id:
        import mlflow

        client = mlflow.MlflowClient()
        client.set_tag(run_id, TRIAL_STATE, "FAIL")
        client.set_tag(run_id, runs.ERROR, "worker died (heartbeat stopped)")
        client.set_terminated(run_id, status="FAILED")


def open_study(config: TuneConfig, *, create: bool):
    """The study (created once, or loaded and checked against this search space); one error before any trial."""
    import optuna

    from ecgtl.stages.queue import open_storage

    space = config.search_space()
    url = config.storage or default_storage()
    storage = open_storage(url, on_stale=_mark_stale_trial_failed)
    name = config.study_name or config.default_study_name()
    sampler = make_sampler(config.sampler_seed)
    pruner = make_pruner(config.pruner, config.finetune.train.epochs, config.reduction_factor)
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise EcgtlError(f"study {name!r} does not exist in {url}") from None
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="maximize", load_if_exists=True)
        study.set_user_attr(SPACE_ATTR, space.to_json())
        study.set_user_attr("ecgtl.tune_config", json.dumps(flatten(config), sort_keys=True, default=str))
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise EcgtlError(f"study {name!r} exists and minimises; ecgtl maximises validation macro AUC: "
                         "choose another study_name")
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored != space.to_json():
        raise EcgtlError(f"study {name!r} exists with another search space; continue it with the same space or "
                         "choose another study_name")
    return study, url, name, space


# ------------------------------------------------------------------------------------------------ trials
class TrialObjective:
    """One trial: a fine-tune that reports validation macro AUC every epoch (pruning), as a child run."""

    def __init__(self, config: TuneConfig, space: ParsedSpace, parent_run_id: str) -> None:
        self.config, self.space, self.parent_run_id = config, space, parent_run_id

    def __call__(self, trial) -> float:
        import optuna

        base = self.config.finetune
        params = suggest(trial, self.space)
        finetune_config = replace(base, train=replace(base.train, **params))
        prepared, rows = load_data(finetune_config.data, finetune_config.train.seed)
        tags = {runs.STAGE: TRIAL_STAGE, runs.SCHEDULE: params["schedule"], "ecgtl.trial": str(trial.number),
                "ecgtl.study": trial.study.study_name, runs.CONFIG_HASH: reuse_key(finetune_config)}
        started = time.perf_counter()
        pruned: optuna.TrialPruned | None = None
        with tempfile.TemporaryDirectory() as tmp, tracking.stage_run(
                f"trial-{trial.number}-{params['schedule']}", tags, flatten(finetune_config),
                parent_run_id=self.parent_run_id) as run_id:
            trial.set_user_attr("ecgtl.run_id", run_id)
            trial.set_user_attr(queue.WORKER_ATTR, queue.worker_id())
            try:
                start = starting_point(finetune_config, prepared, Path(tmp))
                pipeline = fit_pipeline(finetune_config.data, finetune_config.train, prepared, rows)

                def report(result) -> None:
                    if math.isfinite(result.val_macro_auc):
                        trial.report(result.val_macro_auc, result.epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {result.epoch + 1}")

                fitted = fit_step(start.model, prepared, rows, finetune_config.train, pipeline, run_id,
                                  new_head=start.new_head, on_epoch=report)
                value = fitted.best_val_macro_auc
                val = prepared.split("val")
                tracking.log_predictions("val", list(val.index["record_id"]), val.labels, fitted.best_val_logits)
                tracking.set_tags({TRIAL_STATE: "COMPLETE"})
            except optuna.TrialPruned as exc:
                tracking.set_tags({TRIAL_STATE: "PRUNED"})  # the run itself ends FINISHED
                pruned = exc
            except BaseException:
                tracking.set_tags({TRIAL_STATE: "FAIL"})
                raise
            finally:
                tracking.log_epoch(0, {"trial_seconds": time.perf_counter() - started})
                discard_checkpoint(run_id)  # a trial is never resumed
        if pruned is not None:
            raise pruned
        return value


def _worker_main(config_flat: dict, parent_run_id: str, n_trials_total: int, timeout: float, threads: int) -> None:
    import optuna
    import torch

    from ecgtl.config import build

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(max(1, threads))
    config = build(TuneConfig, config_flat)
    study, _, _, space = open_study(config, create=False)
    tracking.configure()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = optuna.study.MaxTrialsCallback(n_trials_total, states=None)
    study.optimize(TrialObjective(config, space, parent_run_id), n_trials=n_trials_total, timeout=timeout or None,
                   callbacks=[stop], catch=(Exception,), gc_after_trial=True)


def _counts(study) -> dict[str, int]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {state: states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}


def tune(config: TuneConfig) -> dict:
    """Run (or continue) a study with `workers` processes, then (by default) train the best config once more."""

    import optuna

    from ecgtl.stages.finetune import DEFAULT_PRETRAINED

    config.validate()
    config.search_space()  # a bad space file is refused before the store is touched
    tracking.configure()
    study, url, name, space = open_study(config, create=True)
    # Everything workers share is ready before they start: data caches and the pretrained model.
    load_data(config.finetune.data, config.finetune.train.seed)
    if config.finetune.pretrained == DEFAULT_PRETRAINED and not tracking.model_exists(DEFAULT_PRETRAINED):
        with tempfile.TemporaryDirectory() as tmp:
            prepared, _ = load_data(config.finetune.data, config.finetune.train.seed)
            starting_point(config.finetune, prepared, Path(tmp))  # runs the default pretraining once
    existing = len(study.trials)
    tags = {runs.STAGE: STAGE, "ecgtl.study": name, runs.TARGET: parse_spec(config.finetune.data.spec).short_name,
            runs.CONFIG_HASH: reuse_key(config)}
    with tracking.stage_run(f"tune-{name}", tags, {**flatten(config), "storage": redact(url)}) as parent_run_id:
        total = existing + config.n_trials
        study.set_user_attr("ecgtl.parent_run_id", parent_run_id)
        study.set_user_attr("ecgtl.target_trials", total)  # workers from other machines stop there too
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        print(f"tune: study {name!r} on {redact(url)}, {config.n_trials} new trials (had {existing}), "
              f"{config.workers} worker(s), pruner {config.pruner}", file=sys.stderr)
        if config.workers == 1:
            _run_in_process(config, space, parent_run_id, total, study)
        else:
            queue.run_processes(_worker_main, (flatten(config), parent_run_id, total, config.timeout, threads),
                                config.workers)
        queue.wait_for_other_workers(study)
        study = optuna.load_study(study_name=name, storage=study._storage)
        summary = log_study(study)
        if config.final and summary.get("best_params"):
            best = replace(config.finetune, train=replace(config.finetune.train, **summary["best_train"]))
            print(f"tune: best trial {summary['best_trial']} (val macro AUC {summary['best_value']:.4f}); training it "
                  "once more and evaluating on test", file=sys.stderr)
            final = finetune(best, nested=True, champion_if_first=False)
            tracking.set_tags({"ecgtl.best_run_id": final.run_id, runs.MODEL_URI: final.model_uri or ""})
            tracking.log_epoch(0, {"best_test_macro_auc": final.metrics["test_macro_auc"]})
            summary["final"] = final
    return summary


def _run_in_process(config: TuneConfig, space: ParsedSpace, parent_run_id: str, total: int, study) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = optuna.study.MaxTrialsCallback(total, states=None)
    study.optimize(TrialObjective(config, space, parent_run_id), n_trials=config.n_trials,
                   timeout=config.timeout or None, callbacks=[stop], catch=(Exception,), gc_after_trial=True)


def tune_worker(storage: str, study_name: str) -> int:
    """Join a running study from another machine: same storage, study name and MLflow tracking server."""
    import optuna

    from ecgtl.config import build
    from ecgtl.stages.queue import open_storage

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage, _mark_stale_trial_failed))
    except KeyError:
        raise EcgtlError(f"study {study_name!r} does not exist in {storage}") from None
    if "ecgtl.tune_config" not in study.user_attrs:
        raise EcgtlError(f"study {study_name!r} was not made by ecgtl tune")
    flat = {**json.loads(study.user_attrs["ecgtl.tune_config"]), "storage": storage, "study_name": study_name}
    config = build(TuneConfig, flat)
    before = len(study.trials)
    target = int(study.user_attrs.get("ecgtl.target_trials", before + config.n_trials))  # the leader's budget
    _worker_main(flatten(config), study.user_attrs.get("ecgtl.parent_run_id"), target, 0.0, os.cpu_count() or 1)
    return len(optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials) - before


# ------------------------------------------------------------------------------------------------ results
def best_per_schedule(study) -> dict:
    """The best COMPLETE trial of each schedule family."""
    best: dict = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name != "COMPLETE" or trial.value is None:
            continue
        schedule = trial.params.get("schedule", "fixed")
        if schedule not in best or trial.value > best[schedule].value:
            best[schedule] = trial
    return best


def log_study(study) -> dict:
    """Best params and value, counts per state, and Optuna's figures (self-contained HTML) on the parent run."""
    import optuna

    counts = _counts(study)
    tracking.log_epoch(0, {f"trials_{state.lower()}": n for state, n in counts.items()})
    summary: dict = {"counts": counts, "study": study.study_name}
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        print(f"tune: no trial completed ({counts})", file=sys.stderr)
        return summary
    best = study.best_trial
    summary.update(best_value=best.value, best_params=best.params, best_trial=best.number,
                   best_train=_train_fields(best.params))
    tracking.log_epoch(0, {"best_val_macro_auc": best.value})
    tracking.set_tags({f"best.{k}": str(v) for k, v in best.params.items()})
    families = best_per_schedule(study)
    summary["per_schedule"] = {k: t.value for k, t in families.items()}
    summary["schedule_finding"] = schedule_finding(families)
    print(f"tune: {counts}; best val macro AUC {best.value:.4f} with {best.params}", file=sys.stderr)
    if summary["schedule_finding"]:
        print(f"tune: {summary['schedule_finding']}", file=sys.stderr)
    figures = []
    for plot in (optuna.visualization.plot_optimization_history, optuna.visualization.plot_intermediate_values,
                 optuna.visualization.plot_param_importances, optuna.visualization.plot_parallel_coordinate,
                 optuna.visualization.plot_slice):
        try:
            figures.append(plot(study))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances need 2+ trials
            print(f"tune: {plot.__name__} skipped ({exc})", file=sys.stderr)
    from ecgtl.plotting import figures_to_html

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if figures:
            (folder / "optuna.html").write_text(figures_to_html(figures, f"ecgtl tuning: {study.study_name}"),
                                                encoding="utf-8")
        frame = study.trials_dataframe()
        frame.to_csv(folder / "trials.csv", index=False)
        (folder / "best.json").write_text(json.dumps({"value": best.value, "params": best.params,
                                                      "trial": best.number, "counts": counts,
                                                      "per_schedule": summary["per_schedule"],
                                                      "finding": summary["schedule_finding"]}, indent=1))
        tracking.log_artifacts(folder, "tuning")
    return summary


def _train_fields(params: dict) -> dict:
    """TrainConfig fields from a trial's Optuna params (the schedule's own names mapped back)."""
    fields = {k: v for k, v in params.items() if k in ("lr", "decay", "head_lr_mult", "weight_decay", "dropout",
                                                      "batch_size", "frozen_bn", "epochs_per_stage",
                                                      "groups_per_stage")}
    if "schedule" in params:
        fields["schedule"] = params["schedule"]
    if "head_epochs" in params:
        fields["epochs_per_stage"] = params["head_epochs"]
    return fields


def schedule_finding(families: dict) -> str:
    """Best family vs runner-up: the difference of validation macro AUC with a paired bootstrap CI over the
    validation records (both trials' logits on the same records). Synthetic data only."""
    from ecgtl.evaluation.metrics import paired_bootstrap

    if len(families) < 2:
        return ""
    ranked = sorted(families.items(), key=lambda item: item[1].value, reverse=True)
    (first, a), (second, b) = ranked[0], ranked[1]
    try:
        pa = tracking.load_predictions(a.user_attrs["ecgtl.run_id"], "val")
        pb = tracking.load_predictions(b.user_attrs["ecgtl.run_id"], "val")
        difference = paired_bootstrap(pa["labels"], pa["logits"], pb["logits"], n_resamples=1000, seed=0)
        interval = f" [{difference.low:+.3f}, {difference.high:+.3f}], p = {difference.p_value:.3f}"
        observed = difference.observed
    except Exception:  # predictions missing (an older trial) or too few records for a CI
        observed, interval = a.value - b.value, " (no CI: validation logits unavailable)"
    return (f"best schedule {first} (val macro AUC {a.value:.4f}) vs {second} ({b.value:.4f}): "
            f"{observed:+.4f}{interval} on validation records")
