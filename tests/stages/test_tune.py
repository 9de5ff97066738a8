"""Tuning: the search space and its validation, conditional parameters, pruned trials as FINISHED runs, the best
configuration trained again and registered as a challenger only; bad input stops before any trial."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from conftest import use_mlflow_store

from ecgtl.errors import EcgtlError
from ecgtl.stages.common import checkpoint_path
from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig, SearchSpace, TuneConfig
from ecgtl.stages.tune_space import load_space_file, parse_space, suggest
from ecgtl.training.config import TrainConfig


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedules": "full,sometimes"}, "sometimes"),
    ({"lr": "0,1e-2"}, "low > 0"),
    ({"lr": "1e-2,1e-4"}, "low <= high"),
    ({"decay": "0.5,2"}, "decay must be >= 1"),
    ({"dropout": "0.2,1.0"}, "dropout"),
    ({"batch_size": "1,64"}, "batch_size"),
    ({"frozen_bn": "eval,frozen"}, "frozen_bn"),
    ({"epochs_per_stage": "0,2"}, "epochs_per_stage"),
    ({"weight_decay": "a,b"}, "not a list of numbers"),
])
def test_invalid_search_space_options_are_one_clear_error(changes, message):
    with pytest.raises(EcgtlError, match=message):
        parse_space(replace(SearchSpace(), **changes))


def test_space_file_and_unknown_keys(tmp_path):

    (tmp_path / "space.yaml").write_text("schedules: [gradual]\nlr: [0.001, 0.01]\nbatch_size: 64\n")
    space = parse_space(load_space_file(str(tmp_path / "space.yaml"), SearchSpace()))
    assert space.schedules == ("gradual",) and space.floats["lr"][:2] == (0.001, 0.01) and space.batch_sizes == (64,)
    (tmp_path / "bad.yaml").write_text("learning_rate: [0.1, 0.2]\n")
    with pytest.raises(EcgtlError, match="unknown search space keys learning_rate"):
        load_space_file(str(tmp_path / "bad.yaml"), SearchSpace())


def test_schedule_parameters_exist_only_under_their_schedule():
    space = parse_space(SearchSpace())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen = {}
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, space)
        seen.setdefault(params["schedule"], set()).update(trial.params)
        study.tell(trial, 0.5)
    assert set(seen) == {"full", "two_stage", "gradual", "chain_thaw"}
    assert "head_epochs" in seen["two_stage"] and "epochs_per_stage" not in seen["two_stage"]
    assert {"epochs_per_stage", "groups_per_stage"} <= seen["gradual"]
    assert "epochs_per_stage" in seen["chain_thaw"] and "groups_per_stage" not in seen["chain_thaw"]
    assert not {"head_epochs", "epochs_per_stage", "groups_per_stage"} & seen["full"]
    fixed = parse_space(replace(SearchSpace(), schedules="gradual", lr="0.005"))
    trial = optuna.create_study().ask()
    assert suggest(trial, fixed)["lr"] == 0.005 and "lr" not in trial.params  # one value fixes a parameter


def _tiny(**changes) -> TuneConfig:
    base = FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=100&seed=5"),
                          train=TrainConfig(epochs=2, batch_size=32, schedule="gradual", decay=2.0), n_bootstrap=20)
    space = replace(SearchSpace(), batch_size="32", schedules="full,gradual")
    return replace(TuneConfig(finetune=base, space=space, n_trials=4, sampler_seed=3), **changes)


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    from ecgtl.stages.pretrain import pretrain

    uri = use_mlflow_store(monkeypatch, tmp_path, "tune-test")
    pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=100&seed=5"), model="xresnet1d18",
                            train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20))
    yield mlflow.MlflowClient(tracking_uri=uri)
    if mlflow.active_run():
        mlflow.end_run()


class EveryOtherTrialPruned(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


def test_tune_runs_trials_as_child_runs_prunes_cleanly_and_registers_only_a_challenger(store, monkeypatch):
    import ecgtl.stages.tune as tune_module
    import ecgtl.stages.tune_study as tune_study

    monkeypatch.setattr(tune_study, "make_pruner", lambda *args: EveryOtherTrialPruned())
    summary = tune_module.tune(_tiny())
    assert summary["counts"]["COMPLETE"] == 2 and summary["counts"]["PRUNED"] == 2
    experiment = store.get_experiment_by_name("tune-test").experiment_id
    found = store.search_runs([experiment], "", max_results=100)
    parent = next(r for r in found if r.data.tags.get("ecgtl.stage") == "tune")
    trials = [r for r in found if r.data.tags.get("ecgtl.stage") == "trial"]
    assert len(trials) == 4 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    states = sorted(r.data.tags["ecgtl.trial_state"] for r in trials)
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert all(r.info.status == "FINISHED" for r in trials)  # pruned trials too
    for run in trials:
        history = store.get_metric_history(run.info.run_id, "val_macro_auc")
        assert len(history) == (2 if run.data.tags["ecgtl.trial_state"] == "COMPLETE" else 1)
        assert "test_macro_auc" not in run.data.metrics  # trials never look at test
        assert not checkpoint_path(run.info.run_id).parent.exists()  # pruned or complete: no checkpoint left
    assert parent.data.metrics["best_val_macro_auc"] == pytest.approx(summary["best_value"])
    assert {"tuning/optuna.html", "tuning/trials.csv", "tuning/best.json"} <= {a.path for a in store.list_artifacts(parent.info.run_id, "tuning")}
    versions = store.search_model_versions("name='ecgtl-finetuned'")
    assert len(versions) == 1  # only the final training registers
    assert str(store.get_model_version_by_alias("ecgtl-finetuned", "challenger").version) == "1"
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="alias champion not found"):
        store.get_model_version_by_alias("ecgtl-finetuned", "champion")  # promotion is the gate's job
    # What an optuna-dashboard reader needs: each trial names its MLflow run and worker, the study its parent.
    from ecgtl.stages.tune_study import default_storage

    study = optuna.load_study(study_name=summary["study"], storage=default_storage())
    assert study.user_attrs["ecgtl.parent_run_id"] == parent.info.run_id
    assert {t.user_attrs["ecgtl.run_id"] for t in study.trials} == {r.info.run_id for r in trials}
    assert all(":" in t.user_attrs["ecgtl.worker"] for t in study.trials)
    contexts = [{tag.value for i in store.get_run(r.info.run_id).inputs.dataset_inputs for tag in i.tags
                 if tag.key == "mlflow.data.context"} for r in trials]
    assert all(c == {"training", "validation", "source"} for c in contexts)  # trials never see test
    final = summary["final"]
    assert "test_macro_auc" in final.metrics and store.get_run(final.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id

    # The same study name continues the study; another search space is refused before any trial.
    again = tune_module.tune(_tiny(n_trials=1, final=False))
    assert sum(again["counts"].values()) == 5
    with pytest.raises(EcgtlError, match="exists with another search space"):
        tune_module.tune(_tiny(n_trials=1, space=replace(SearchSpace(), schedules="full")))


def test_unreachable_storage_and_wrong_direction_stop_before_any_trial(store, tmp_path):
    from ecgtl.stages.tune import tune

    with pytest.raises(EcgtlError, match=r"storage postgresql\+psycopg2://ecgtl:\*\*\*@127.0.0.1:9/nowhere: cannot be used"):
        tune(_tiny(storage="postgresql+psycopg2://ecgtl:secret@127.0.0.1:9/nowhere"))
    storage = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="minimising", storage=storage, direction="minimize")
    with pytest.raises(EcgtlError, match="minimises"):
        tune(_tiny(storage=storage, study_name="minimising"))
    experiment = store.get_experiment_by_name("tune-test").experiment_id
    assert not [r for r in store.search_runs([experiment], "") if r.data.tags.get("ecgtl.stage") in ("tune", "trial")]


@pytest.mark.parametrize(("epochs", "pruner", "factor", "expected"), [
    (6, "auto", 0, ("hyperband", 3)), (19, "auto", 0, ("hyperband", 3)), (20, "auto", 0, ("hyperband", 2)),
    (50, "auto", 4, ("hyperband", 4)), (50, "successive_halving", 0, ("successive_halving", 2)),
    (6, "median", 0, ("median", 3)),
])
def test_the_auto_pruner_follows_the_trials_length(epochs, pruner, factor, expected):
    config = TuneConfig(finetune=FinetuneConfig(train=TrainConfig(epochs=epochs)), pruner=pruner,
                        reduction_factor=factor)
    assert config.validate().pruning() == expected


def test_a_reduction_factor_of_one_is_refused():
    with pytest.raises(EcgtlError, match="reduction_factor"):
        TuneConfig(reduction_factor=1).validate()


def test_each_pruner_name_builds_its_optuna_pruner():
    from ecgtl.stages.tune_study import make_pruner

    assert isinstance(make_pruner("hyperband", 20, 2), optuna.pruners.HyperbandPruner)
    halving = make_pruner("successive_halving", 20, 3)
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner) and halving._reduction_factor == 3
    assert isinstance(make_pruner("median", 20), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("none", 20), optuna.pruners.NopPruner)
