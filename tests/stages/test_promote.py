"""The promotion gate: first version, paired decision from logged predictions or by re-inference, dry run,
refusals, tags and a promote run, and exactly one champion even when killed midway."""

from __future__ import annotations

import pytest
from conftest import use_mlflow_store, use_store_copy

from ecgtl.errors import EcgtlError
from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig, PromoteConfig
from ecgtl.stages.finetune import finetune
from ecgtl.stages.pretrain import pretrain
from ecgtl.stages.promote import decide, promote
from ecgtl.training.config import TrainConfig

TARGET = "synthetic:g12ec?n=100&seed=7"


def _finetune(**data_changes) -> FinetuneConfig:
    return FinetuneConfig(data=DataConfig(spec=TARGET, **data_changes),
                          train=TrainConfig(epochs=2, batch_size=32, schedule="gradual", decay=2.0), n_bootstrap=20)


@pytest.fixture(scope="module")
def prepared_registry(tmp_path_factory):
    """Trained once per module: a pretraining, v1 (champion) and v2 (challenger, same test records)."""
    folder = tmp_path_factory.mktemp("promote")
    with pytest.MonkeyPatch.context() as patch:
        use_mlflow_store(patch, folder, "promote-test", cache=True)
        pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=100&seed=7"), model="xresnet1d18",
                                train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20))
        first = finetune(_finetune())  # v1: champion
        second = finetune(_finetune(fraction=0.5))  # v2: challenger, same test records
    return folder, first, second


@pytest.fixture
def registry(prepared_registry, tmp_path, monkeypatch):
    """This test's own copy of the prepared registry: it may move champion, no other test sees it."""
    import mlflow

    from ecgtl import tracking

    prepared, first, second = prepared_registry
    uri = use_store_copy(monkeypatch, prepared, tmp_path / "store", "promote-test")
    tracking.configure()
    return {"client": mlflow.MlflowClient(tracking_uri=uri), "first": first, "second": second,
            "folder": tmp_path / "store"}


def _champions(client, name="ecgtl-finetuned"):
    """Versions holding `champion` (search results do not carry aliases, so ask per version)."""
    versions = [v.version for v in client.search_model_versions(f"name='{name}'")]
    return sorted(str(v) for v in versions if "champion" in client.get_model_version(name, v).aliases)


def test_decision_from_logged_predictions_and_dry_run(registry):
    client = registry["client"]
    runs_before = len(client.search_runs([client.get_experiment_by_name("promote-test").experiment_id], ""))
    dry = promote(PromoteConfig(challenger="2", margin=-1.0, ece_tolerance=1.0, n_bootstrap=100, dry_run=True))
    assert dry.promote and dry.scored_from == "logged predictions" and dry.champion == 1
    assert _champions(client) == ["1"]  # a dry run changes nothing
    assert len(client.search_runs([client.get_experiment_by_name("promote-test").experiment_id], "")) == runs_before
    kept = promote(PromoteConfig(challenger="2", margin=1.0, n_bootstrap=100))  # no model gains a whole AUC unit
    assert not kept.promote and "does not exceed the margin" in kept.reason and _champions(client) == ["1"]
    tags = client.get_model_version("ecgtl-finetuned", "2").tags
    assert tags["ecgtl.promotion.promote"] == "False" and "margin" in tags["ecgtl.promotion.reason"]
    assert float(tags["ecgtl.promotion.gain_ci_low"]) <= float(tags["ecgtl.promotion.gain"])
    gate = client.search_runs([client.get_experiment_by_name("promote-test").experiment_id],
                              "tags.`ecgtl.stage` = 'promote'", order_by=["attributes.start_time DESC"])[0]
    assert gate.data.tags["ecgtl.decision"] == "keep" and gate.info.status == "FINISHED"


def test_killed_midway_leaves_exactly_one_champion(registry, monkeypatch):
    from ecgtl import tracking

    client = registry["client"]
    real_move = tracking.move_alias

    def killed_before(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "move_alias", killed_before)
    with pytest.raises(KeyboardInterrupt):
        promote(PromoteConfig(challenger="2", margin=-1.0, ece_tolerance=1.0, n_bootstrap=50))
    assert _champions(client) == ["1"]

    def killed_after(*args, **kwargs):
        real_move(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "move_alias", killed_after)
    with pytest.raises(KeyboardInterrupt):
        promote(PromoteConfig(challenger="2", margin=-1.0, ece_tolerance=1.0, n_bootstrap=50))
    assert _champions(client) == ["2"]


def test_other_test_records_are_scored_by_re_inference(registry):
    other = finetune(FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=100&seed=8"),
                                    train=TrainConfig(epochs=1, batch_size=32, schedule="gradual", decay=2.0),
                                    n_bootstrap=20))
    decision = decide(PromoteConfig(challenger=str(other.version), n_bootstrap=50))
    assert decision.scored_from == "re-inference on synthetic:g12ec?n=100&seed=8" and decision.n_records == 10


def test_first_version_becomes_champion_and_refusals(registry):
    from ecgtl import tracking

    tracking.register(registry["first"].model_uri, "ecgtl-fresh", champion_if_first=False)
    decision = promote(PromoteConfig(model="ecgtl-fresh", n_bootstrap=20))
    assert decision.promote and decision.reason.startswith("no champion yet") and _champions(registry["client"], "ecgtl-fresh") == ["1"]
    with pytest.raises(EcgtlError, match="'ecgtl-nothing' has no versions"):
        promote(PromoteConfig(model="ecgtl-nothing"))
    with pytest.raises(EcgtlError, match="alias 'nowhere' of ecgtl-finetuned points to no version"):
        promote(PromoteConfig(challenger="nowhere"))
    limbs = finetune(FinetuneConfig(data=DataConfig(spec=TARGET, leads="limb6"), init="scratch", model="xresnet1d18",
                                    train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20), register=False)
    tracking.register(limbs.model_uri, "ecgtl-finetuned", champion_if_first=False)
    with pytest.raises(EcgtlError, match="other leads than the champion"):
        promote(PromoteConfig(challenger="challenger"))


def test_a_small_target_with_rare_classes_gets_a_decision_with_finite_numbers(tmp_path, monkeypatch):
    """Two quick fine-tunes on 400 synthetic Georgia records: 40 test records, several classes with one or two
    positives. The gate used to exit ("too few resamples ..."); now it decides on the classes with enough
    records, names them on the promote run and the version, and every number is finite."""
    import math

    import mlflow
    import numpy as np

    from ecgtl import tracking
    from ecgtl.stages.common import checkpoint_path

    uri = use_mlflow_store(monkeypatch, tmp_path, "promote-small", cache=True)
    target = "synthetic:g12ec?n=400&seed=0"
    pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=100&seed=7"), model="xresnet1d18",
                            train=TrainConfig(epochs=1, batch_size=32), n_bootstrap=20))
    config = FinetuneConfig(data=DataConfig(spec=target), train=TrainConfig(epochs=1, batch_size=32,
                                                                             schedule="gradual", decay=2.0),
                            n_bootstrap=50)
    first = finetune(config)
    assert not checkpoint_path(first.run_id).parent.exists()  # a finished run leaves no checkpoint behind
    finetune(FinetuneConfig(data=DataConfig(spec=target, fraction=0.5), train=config.train, n_bootstrap=50))
    test = tracking.load_predictions(first.run_id, "test")
    positives = test["labels"].sum(axis=0)
    assert len(test["labels"]) == 40 and ((positives >= 1) & (positives <= 2)).sum() >= 3
    assert all(math.isfinite(first.metrics[k]) for k in ("test_macro_auc_ci_low", "test_macro_auc_ci_high"))
    decision = promote(PromoteConfig(challenger="2", n_bootstrap=200))
    assert math.isfinite(decision.gain) and decision.gain_ci_low <= decision.gain <= decision.gain_ci_high
    assert math.isfinite(decision.ece_challenger) and math.isfinite(decision.ece_champion)
    covered, left_out = decision.classes.split(","), decision.left_out.split(",")
    supported = (np.minimum(positives, 40 - positives) >= 5)
    assert len(covered) == int(supported.sum()) >= 1 and len(left_out) >= 3 and not set(covered) & set(left_out)
    assert f"macro over {len(covered)} classes" in decision.reason
    client = mlflow.MlflowClient(tracking_uri=uri)
    gate = client.search_runs([client.get_experiment_by_name("promote-small").experiment_id],
                              "tags.`ecgtl.stage` = 'promote'")[0]
    assert gate.data.tags["ecgtl.promotion.classes"] == decision.classes
    assert client.get_model_version("ecgtl-finetuned", "2").tags["ecgtl.promotion.left_out"] == decision.left_out


def test_a_champion_that_saw_the_challengers_test_records_is_refused(registry):
    """A model trained on another split_seed of the same data has seen most of the challenger's test records."""
    other_split = finetune(_finetune(split_seed=1))
    decision = decide(PromoteConfig(challenger=str(other_split.version), margin=-1.0, ece_tolerance=1.0,
                                    n_bootstrap=50))
    assert not decision.promote and decision.reason.startswith("refused: ")
    assert "the champion v1 was trained on" in decision.reason and "test records" in decision.reason


def test_the_champion_moves_only_if_it_is_still_the_one_compared_with(registry, monkeypatch):
    """Two gates at once used to both move `champion`; the second now sees it moved and refuses."""
    from ecgtl import tracking
    from ecgtl.stages import promote as promote_module

    client = registry["client"]
    real_decide = promote_module.decide

    def another_gate_moves_it_meanwhile(config):
        decision = real_decide(config)  # compared v2 with champion v1 ...
        tracking.move_alias("ecgtl-finetuned", "champion", "3" if _champions(client) == ["1"] else "1")
        return decision  # ... but by now v3 holds champion

    tracking.register(registry["first"].model_uri, "ecgtl-finetuned", champion_if_first=False)  # v3 exists
    monkeypatch.setattr(promote_module, "decide", another_gate_moves_it_meanwhile)
    decision = promote(PromoteConfig(challenger="2", margin=-1.0, ece_tolerance=1.0, n_bootstrap=50))
    assert not decision.promote and "champion moved from v1 to v3 while this gate compared" in decision.reason
    assert _champions(client) == ["3"]
    assert client.get_model_version("ecgtl-finetuned", "2").tags["ecgtl.promotion.promote"] == "False"
