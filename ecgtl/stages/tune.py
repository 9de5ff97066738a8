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
versions). Pruner (`auto` by default): Hyperband (min 1 epoch, max the trial's epochs) with reduction factor 3
for trials under 20 epochs and 2 from 20 epochs on: at 6 and at 20 epochs, the settings that kept the best
trial on both sampler seeds with the fewest epochs in benchmarks/bench_tune.py; also `hyperband`,
`successive_halving` (min 1 epoch), `median` (5 startup trials, 1 warm-up epoch) or `none`; `reduction_factor`
overrides the factor. Every epoch reports through the trainer's after-epoch hook.

Storage: an SQLite file beside an `sqlite:///` MLflow store (`optuna.db`), else in the cache folder;
`storage=postgresql+psycopg2://...` (or a journal file) for many workers. `workers=N` runs N processes on one
study, created once before they start; `ecgtl tune-worker --storage URL --study-name NAME` joins from another
machine. The same study name continues a study; one with another search space or direction is refused. A
worker that dies stops its heartbeat; its trial turns FAIL (and its run FAILED) when another worker notices.

One idea per file: the space in `tune_space.py`, the Optuna study in `tune_study.py`, the trial objective and
the fan-out over workers here, the results in `tune_results.py`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ecgtl import runs, tracking
from ecgtl.config import build, flatten, reuse_key
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inputs import parse_leads
from ecgtl.redaction import redact
from ecgtl.stages import queue
from ecgtl.stages.common import (
    FitData,
    check_training,
    discard_checkpoint,
    fit_pipeline,
    fit_step,
    load_data,
    refuse_torchrun,
    split_datasets,
    training_priors,
)
from ecgtl.stages.configs import DEFAULT_PRETRAINED, REDUCING_PRUNERS, TuneConfig
from ecgtl.stages.finetune import check_pretrained, finetune, starting_point
from ecgtl.stages.tune_results import log_study
from ecgtl.stages.tune_space import ParsedSpace, search_space_of, suggest
from ecgtl.stages.tune_study import mark_stale_trial_failed, open_study
from ecgtl.training.objectives.supervised import Supervised

STAGE, TRIAL_STAGE = runs.TUNE, runs.TRIAL


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
        tags = {runs.STAGE: TRIAL_STAGE, runs.SCHEDULE: params["schedule"], runs.TRIAL_NUMBER: str(trial.number),
                runs.STUDY: trial.study.study_name, runs.CONFIG_HASH: reuse_key(finetune_config)}
        started = time.perf_counter()
        pruned: optuna.TrialPruned | None = None
        with tempfile.TemporaryDirectory() as tmp, tracking.stage_run(
                f"trial-{trial.number}-{params['schedule']}", tags, flatten(finetune_config),
                parent_run_id=self.parent_run_id) as run_id:
            trial.set_user_attr(runs.RUN_ID_ATTR, run_id)
            trial.set_user_attr(runs.WORKER_ATTR, queue.worker_id())
            try:
                start = starting_point(finetune_config, prepared, Path(tmp))
                tracking.log_datasets(split_datasets(prepared, parse_leads(finetune_config.data.leads),
                                                     {"train": rows, "val": None}, inherited=start.inherited))
                pipeline = fit_pipeline(finetune_config.data, finetune_config.train, prepared, rows)

                def report(result) -> None:
                    if math.isfinite(result.val_macro_auc):
                        trial.report(result.val_macro_auc, result.epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {result.epoch + 1}")

                if start.new_head:
                    start.model.init_head_bias(training_priors(prepared, rows))
                fitted = fit_step(start.model, Supervised(), FitData.of(prepared, rows), finetune_config.train,
                                  pipeline, run_id, on_epoch=report)
                value = fitted.best_signal
                val = prepared.split("val")
                tracking.log_predictions("val", list(val.index["record_id"]), val.labels, fitted.best_val_logits)
                tracking.set_tags({runs.TRIAL_STATE: "COMPLETE"})
            except optuna.TrialPruned as exc:
                tracking.set_tags({runs.TRIAL_STATE: "PRUNED"})  # the run itself ends FINISHED
                pruned = exc
            except BaseException:
                tracking.set_tags({runs.TRIAL_STATE: "FAIL"})
                raise
            finally:
                tracking.log_epoch(0, {"trial_seconds": time.perf_counter() - started})
                discard_checkpoint(run_id)  # a trial is never resumed
        if pruned is not None:
            raise pruned
        return value


def _optimize(study, config: TuneConfig, space: ParsedSpace, parent_run_id: str, n_trials: int,
              total: int, timeout: float) -> None:
    """Run up to `n_trials` trials on `study`, stopping when it holds `total` (every worker stops there)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = optuna.study.MaxTrialsCallback(total, states=None)
    study.optimize(TrialObjective(config, space, parent_run_id), n_trials=n_trials, timeout=timeout or None,
                   callbacks=[stop], catch=(Exception,), gc_after_trial=True)


def _worker_main(config_flat: dict, parent_run_id: str, n_trials_total: int, timeout: float, threads: int) -> None:
    """One worker process (or a worker that joined from another machine): trials until the study is full."""
    import torch

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(max(1, threads))
    config = build(TuneConfig, config_flat)
    study, _, _, space = open_study(config, create=False)
    tracking.configure()
    _optimize(study, config, space, parent_run_id, n_trials_total, n_trials_total, timeout)


def tune(config: TuneConfig) -> dict:
    """Run (or continue) a study with `workers` processes, then (by default) train the best config once more."""

    import optuna

    refuse_torchrun("tune")
    config.validate()
    search_space_of(config)  # a bad space file is refused before the store is touched
    check_training(config.finetune.train)
    tracking.configure()
    check_pretrained(config.finetune)
    study, url, name, space = open_study(config, create=True)
    # Everything workers share is ready before they start: data caches and the pretrained model.
    prepared, _ = load_data(config.finetune.data, config.finetune.train.seed)
    if config.finetune.pretrained == DEFAULT_PRETRAINED and not tracking.model_exists(DEFAULT_PRETRAINED):
        with tempfile.TemporaryDirectory() as tmp:
            starting_point(config.finetune, prepared, Path(tmp))  # runs the default pretraining once
    existing = len(study.trials)
    tags = {runs.STAGE: STAGE, runs.STUDY: name, runs.TARGET: parse_spec(config.finetune.data.spec).short_name,
            runs.CONFIG_HASH: reuse_key(config)}
    with tracking.stage_run(f"tune-{name}", tags, {**flatten(config), "storage": redact(url)}) as parent_run_id:
        total = existing + config.n_trials
        study.set_user_attr(runs.PARENT_RUN_ID_ATTR, parent_run_id)
        study.set_user_attr(runs.TARGET_TRIALS_ATTR, total)  # workers from other machines stop there too
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        pruner, factor = config.pruning()
        print(f"tune: study {name!r} on {redact(url)}, {config.n_trials} new trials (had {existing}), "
              f"{config.workers} worker(s), pruner {pruner}"
              f"{f' (reduction factor {factor})' if pruner in REDUCING_PRUNERS else ''}", file=sys.stderr)
        if config.workers == 1:
            _optimize(study, config, space, parent_run_id, config.n_trials, total, config.timeout)
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
            tracking.set_tags({runs.BEST_RUN_ID: final.run_id, runs.MODEL_URI: final.model_uri or ""})
            tracking.log_epoch(0, {"best_test_macro_auc": final.metrics["test_macro_auc"]})
            summary["final"] = final
    return summary


def tune_worker(storage: str, study_name: str) -> int:
    """Join a running study from another machine: same storage, study name and MLflow tracking server."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=queue.open_storage(storage, mark_stale_trial_failed))
    except KeyError:
        raise EcgtlError(f"study {study_name!r} does not exist in {storage}") from None
    if runs.TUNE_CONFIG_ATTR not in study.user_attrs:
        raise EcgtlError(f"study {study_name!r} was not made by ecgtl tune")
    flat = {**json.loads(study.user_attrs[runs.TUNE_CONFIG_ATTR]), "storage": storage, "study_name": study_name}
    config = build(TuneConfig, flat)
    before = len(study.trials)
    target = int(study.user_attrs.get(runs.TARGET_TRIALS_ATTR, before + config.n_trials))  # the leader's budget
    _worker_main(flatten(config), study.user_attrs.get(runs.PARENT_RUN_ID_ATTR), target, 0.0, os.cpu_count() or 1)
    return len(optuna.load_study(study_name=study_name, storage=queue.open_storage(storage)).trials) - before


