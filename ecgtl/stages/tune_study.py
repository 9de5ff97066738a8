"""Optuna plumbing for tuning: storage, sampler and pruner, and the study opened once and checked against the
search space (a study with another space or direction is refused before any trial)."""

from __future__ import annotations

import json

from ecgtl import runs, tracking
from ecgtl.config import flatten
from ecgtl.errors import EcgtlError
from ecgtl.paths import cache_root
from ecgtl.stages.configs import TuneConfig
from ecgtl.stages.queue import open_storage
from ecgtl.stages.tune_space import ParsedSpace, search_space_of


def default_storage() -> str:
    """`optuna.db` beside an sqlite MLflow store, else in the cache folder."""
    database = tracking.sqlite_path(tracking.tracking_uri())
    if database is not None:
        return f"sqlite:///{database.with_name('optuna.db')}"
    (cache_root()).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{cache_root() / 'optuna.db'}"


def make_sampler(seed: int):
    """TPE as measured in benchmarks/bench_tune.py: 5 random startup trials (Optuna's default is 10), independent
    (not multivariate: Optuna 5 made multivariate its default) and with the constant liar (Optuna 4's default was
    off). Only these are passed: the options Optuna deprecated (consider_prior, prior_weight, consider_magic_clip,
    consider_endpoints, warn_independent_sampling) stay at their defaults, which are the values passed before."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=False, constant_liar=True)


def make_pruner(name: str, epochs: int, reduction_factor: int = 3):
    import optuna

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                              reduction_factor=reduction_factor)
    if name == "successive_halving":  # one bracket: Hyperband's most aggressive one alone
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction_factor)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1, interval_steps=1)
    return optuna.pruners.NopPruner()


def mark_stale_trial_failed(study, trial) -> None:
    """Storage callback for a trial whose worker died: its MLflow run ends FAILED with the state tag."""
    run_id = trial.user_attrs.get(runs.RUN_ID_ATTR)
    if run_id:
        tracking.fail_run(run_id, {runs.TRIAL_STATE: "FAIL", runs.ERROR: "worker died (heartbeat stopped)"})


def open_study(config: TuneConfig, *, create: bool) -> tuple[object, str, str, ParsedSpace]:
    """The study (created once, or loaded and checked against this search space); one error before any trial."""
    import optuna

    space = search_space_of(config)
    url = config.storage or default_storage()
    storage = open_storage(url, on_stale=mark_stale_trial_failed)
    name = config.study_name or config.default_study_name()
    sampler = make_sampler(config.sampler_seed)
    pruner_name, reduction_factor = config.pruning()
    pruner = make_pruner(pruner_name, config.finetune.train.epochs, reduction_factor)
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise EcgtlError(f"study {name!r} does not exist in {url}") from None
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="maximize", load_if_exists=True)
        study.set_user_attr(runs.SPACE_ATTR, space.to_json())
        study.set_user_attr(runs.TUNE_CONFIG_ATTR, json.dumps(flatten(config), sort_keys=True, default=str))
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise EcgtlError(f"study {name!r} exists and minimises; ecgtl maximises validation macro AUC: "
                         "choose another study_name")
    stored = study.user_attrs.get(runs.SPACE_ATTR)
    if stored != space.to_json():
        raise EcgtlError(f"study {name!r} exists with another search space; continue it with the same space or "
                         "choose another study_name")
    return study, url, name, space
