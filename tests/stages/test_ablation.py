"""The ablation stage: presets expand to the study's grids; a tiny preset runs end to end through MLflow, resumes
after a killed cell without re-running finished ones, records failed cells, and never registers a model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import use_mlflow_store

from ecgtl.errors import EcgtlError
from ecgtl.stages.ablation import expand, parse_axes, tasks_of
from ecgtl.stages.configs import OBJECTIVES, AblationConfig

TINY = dict(quick=True, source="synthetic:ptbxl?n=120&seed=0", target="synthetic:g12ec?n=120&seed=0",
            pretrain_epochs=1, finetune_epochs=1, n_bootstrap=20, seeds=2, axes="target_fraction=1,0.5")


@pytest.mark.parametrize(("preset", "cells", "pretrainings"), [
    ("exp1-target-fraction", 5 * 2 * 3, 1),
    ("exp2-source-fraction", 3 * 3 + 3, 3),  # scratch has no source: one scratch cell per seed
    ("exp3-sampling-rate", 4 * 2 * 3, 4),
    ("exp4-calibration", 2 * 2 * 3, 1),
    ("exp5-frequency-domain", 4 * 2 * 3, 4),
    ("leads", 6 * 2 * 3, 6),
    # each objective x (pretrained, linear_probe) + random_frozen + scratch, x 3 fractions x 3 seeds
    ("pretraining-objectives", (len(OBJECTIVES) * 2 + 2) * 3 * 3, len(OBJECTIVES)),
    # 4 corrections x 2 fractions pretrained + 2 fractions scratch, x 3 seeds; one pretraining
    ("label-shift", (4 * 2 + 2) * 3, 1),
    # 4 target rates x (2 augmentations pretrained + scratch) x 3 seeds; a pretraining per augmentation
    ("exp3-rate-shift", 4 * 3 * 3, 2),
    # 2 sources x 2 targets pretrained + 2 targets scratch, x 3 seeds; a pretraining per source
    ("transfer-matrix", (2 * 2 + 2) * 3, 2),
    # ecgtl's own pretraining (no --starting_points) + scratch, x 3 fractions x 3 seeds
    ("sources", (1 + 1) * 3 * 3, 1),
])
def test_presets_expand_to_the_study_grids(preset, cells, pretrainings):
    expanded = expand(AblationConfig(preset=preset, quick=True))
    tasks = tasks_of(expanded)
    assert len(expanded) == cells and sum(t["kind"] == "pretrain" for t in tasks) == pretrainings
    assert [t["kind"] for t in tasks] == ["pretrain"] * pretrainings + ["cell"] * cells  # pretrainings first
    for cell in expanded:  # pretrained and scratch cells see the same data and seed
        assert cell.finetune.data.fs == cell.axes["fs"] and cell.finetune.train.seed == cell.axes["seed"]
        if cell.pretrain:
            assert (cell.pretrain.data.fs, cell.pretrain.data.leads, cell.pretrain.data.domain) == \
                   (cell.finetune.data.fs, cell.finetune.data.leads, cell.finetune.data.domain)


def test_high_sampling_rates_read_the_500_hz_files_of_synthetic_ptbxl():
    cells = expand(AblationConfig(preset="exp3-sampling-rate", quick=True, seeds=1))
    specs = {c.axes["fs"]: c.pretrain.data.spec for c in cells if c.pretrain}
    assert "rates=100,500" in specs[500.0] and "rates=100,500" in specs[250.0] and "rates" not in specs[100.0]


def test_all_is_the_union_without_duplicates():
    total = expand(AblationConfig(preset="all", quick=True))
    assert len(total) == len({repr(sorted(c.axes.items(), key=str)) for c in total})
    assert len(total) < sum(len(expand(AblationConfig(preset=p, quick=True))) for p in
                            ("exp1-target-fraction", "exp2-source-fraction", "exp3-sampling-rate", "exp4-calibration",
                             "exp5-frequency-domain", "leads"))


def test_axis_overrides_and_bad_axes():
    assert parse_axes("target_fraction=1,0.1;seed=0,1;leads=all12|I,II") == {
        "target_fraction": (1.0, 0.1), "seed": (0, 1), "leads": ("all12", "I,II")}
    for bad, message in (("colour=red", "NAME=V1,V2"), ("target_fraction=2", "> 0 and <= 1, got 2"), ("domain=wavelet", "domain"),
                         ("init=warm", "init"), ("leads=X1", "unknown lead")):
        with pytest.raises(EcgtlError, match=message):
            parse_axes(bad)
    with pytest.raises(EcgtlError, match="preset must be one of exp1-target-fraction, .*, all, custom; got 'exp9'"):
        AblationConfig(preset="exp9").validate()


def test_grid_file(tmp_path):
    (tmp_path / "grid.yaml").write_text("axes:\n  domain: [time, fft_abs]\n  seed: [4]\n  init: [scratch]\n")
    cells = expand(AblationConfig(grid_file=str(tmp_path / "grid.yaml"), quick=True))
    assert sorted((c.axes["domain"], c.axes["seed"], c.axes["init"]) for c in cells) == [
        ("fft_abs", 4, "scratch"), ("time", 4, "scratch")]


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    uri = use_mlflow_store(monkeypatch, tmp_path, "ablation-test")
    yield mlflow.MlflowClient(tracking_uri=uri)  # not the URI an earlier test set process-wide
    if mlflow.active_run():
        mlflow.end_run()


def _cell_runs(client):
    experiment = client.get_experiment_by_name("ablation-test").experiment_id
    found = client.search_runs([experiment], "", max_results=1000)
    return [r for r in found if r.data.tags.get("ecgtl.stage") in ("finetune", "scratch")]


def test_quick_ablation_resumes_after_a_killed_cell_and_records_failed_ones(store, monkeypatch):
    import ecgtl.stages.ablation as ablation_module
    import ecgtl.stages.common as common

    config = AblationConfig(preset="exp1-target-fraction", **TINY)
    real_finetune = ablation_module.finetune
    calls = []

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the cell trains

    def killed_at_the_fourth_cell(*args, **kwargs):
        calls.append(kwargs["axes"])
        if len(calls) == 4:
            with pytest.MonkeyPatch.context() as inside:
                inside.setattr(common, "fit", interrupt)
                return real_finetune(*args, **kwargs)
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(ablation_module, "finetune", killed_at_the_fourth_cell)
    with pytest.raises(KeyboardInterrupt):
        ablation_module.ablation(config)
    first = {r.info.run_id: r.info.status for r in _cell_runs(store)}
    assert sorted(first.values()) == ["FINISHED"] * 3 + ["KILLED"]
    parent = store.search_runs([store.get_experiment_by_name("ablation-test").experiment_id],
                               "tags.`ecgtl.stage` = 'ablation'")[0]
    assert parent.info.status == "KILLED"

    # One cell fails for a reason of its own; the others go on and the failure is recorded.
    def one_cell_fails(*args, **kwargs):
        if kwargs["axes"] == {"target_fraction": 0.5, "fs": 100.0, "domain": "time", "leads": "all12",
                              "init": "scratch", "seed": 1}:
            raise RuntimeError("injected cell failure")
        return real_finetune(*args, **kwargs)

    monkeypatch.setattr(ablation_module, "finetune", one_cell_fails)
    results = ablation_module.ablation(config)
    cells = results["cells"]
    assert len(cells) == 8 and (cells["status"] == "finished").sum() == 7
    assert "injected cell failure" in cells.loc[cells["status"] != "finished", "error"].item()
    second = {r.info.run_id: r.info.status for r in _cell_runs(store)}
    assert {k: v for k, v in first.items() if v == "FINISHED"}.items() <= second.items()  # reused, not re-run
    assert sum(v == "FINISHED" for v in second.values()) == 7

    # The same command again: only the failed cell runs.
    monkeypatch.setattr(ablation_module, "finetune", real_finetune)
    results = ablation_module.ablation(config)
    assert (results["cells"]["status"] == "finished").all()
    third = _cell_runs(store)
    assert sum(r.info.status == "FINISHED" for r in third) == 8
    assert all(r.data.tags["ecgtl.axis.init"] in ("pretrained", "scratch") for r in third)
    assert not store.search_registered_models()  # cells never register models

    paired = results["paired"]
    assert set(paired["target_fraction"]) == {1.0, 0.5} and (paired["n_seeds"] == 2).all()
    assert (paired["diff_ci_low"] <= paired["diff"]).all() and (paired["diff"] <= paired["diff_ci_high"]).all()
    assert "## target fraction" in results["summary"] and "auc_vs_target_fraction" in results["figures"]
    parent = store.search_runs([store.get_experiment_by_name("ablation-test").experiment_id],
                               "tags.`ecgtl.stage` = 'ablation'", order_by=["attributes.start_time DESC"])[0]
    artifacts = {Path(a.path).name for a in store.list_artifacts(parent.info.run_id, "ablation")}
    assert {"cells.csv", "aggregate.csv", "paired.csv", "summary.md", "figures.html", "pretraining.csv"} <= artifacts
    tidy = pd.read_csv(store.download_artifacts(parent.info.run_id, "ablation/cells.csv"))
    assert {"test_macro_auc", "test_ece", "test_ece_platt", "test_mce_isotonic", "test_brier_temperature"} <= set(tidy.columns)


def test_the_pretraining_objectives_preset_pairs_every_init_with_scratch_and_each_objective_with_supervised(store):
    import ecgtl.stages.ablation as ablation_module

    config = AblationConfig(preset="pretraining-objectives", **{**TINY, "seeds": 1, "axes": "target_fraction=1"})
    cells = expand(config)
    pretrainings = {c.pretrain.objective for c in cells if c.pretrain}
    assert pretrainings == set(OBJECTIVES) and {"supervised", "contrastive", "cpc"} <= pretrainings
    self_supervised = sorted(set(OBJECTIVES) - {"supervised"})
    results = ablation_module.ablation(config)
    frame = results["cells"]
    assert (frame["status"] == "finished").all() and len(frame) == 2 * len(OBJECTIVES) + 2
    assert sorted(map(str, frame["objective"].fillna("-"))) == sorted(["-", "-", *OBJECTIVES, *OBJECTIVES])
    assert set(frame["init"]) == {"pretrained", "linear_probe", "random_frozen", "scratch"}
    pairs = results["paired"]
    against_scratch = pairs[pairs["reference"] == "scratch"]
    assert sorted(zip(against_scratch["init"], against_scratch["objective"].fillna("-"), strict=True)) == sorted(
        [(init, objective) for init in ("linear_probe", "pretrained") for objective in OBJECTIVES]
        + [("random_frozen", "-")])
    against_supervised = pairs[pairs["reference"] == "supervised"]
    assert sorted(zip(against_supervised["init"], against_supervised["objective"], strict=True)) == sorted(
        (init, objective) for init in ("linear_probe", "pretrained") for objective in self_supervised)
    assert pairs["diff"].notna().all()
    assert "## pretraining objectives and baselines" in results["summary"]
    experiment = store.get_experiment_by_name("ablation-test").experiment_id
    parent = store.search_runs([experiment], "tags.`ecgtl.stage` = 'ablation'")[0]
    logged = {a.path for a in store.list_artifacts(parent.info.run_id, "ablation")}
    assert {"ablation/cells.csv", "ablation/paired.csv"} <= logged
    objectives = {r.data.tags.get("ecgtl.objective") for r in store.search_runs(
        [experiment], "tags.`ecgtl.stage` = 'pretrain'")}
    assert objectives == set(OBJECTIVES)


def test_the_open_question_presets_set_what_each_axis_promises():
    shift = expand(AblationConfig(preset="label-shift", quick=True, seeds=1))
    for cell in shift:
        if cell.pretrain:  # the source head is reused so that its priors are there to correct
            assert cell.finetune.label_shift == cell.axes["label_shift"] and cell.finetune.head == "reuse"
        else:
            assert cell.axes["label_shift"] is None and cell.finetune.label_shift == "none"
    rate = expand(AblationConfig(preset="exp3-rate-shift", quick=True, seeds=1))
    assert {(c.axes["target_fs"], c.finetune.data.record_fs) for c in rate} == {(f, f) for f in (50.0, 100.0, 250.0, 500.0)}
    assert {c.pretrain.fs_augment for c in rate if c.pretrain} == {"", "50,500"}
    assert all(c.pretrain.data.fs == 100.0 for c in rate if c.pretrain)
    matrix = expand(AblationConfig(preset="transfer-matrix", quick=True, seeds=1,
                                   sources="synthetic:ptbxl?n=80&rates=100,500,synthetic:g12ec?n=60",
                                   targets="synthetic:g12ec?n=50|synthetic:ptbxl?n=70&noise=0"))
    pairs = {(c.pretrain.data.spec, c.finetune.data.spec) for c in matrix if c.pretrain}
    assert pairs == {(s, t) for s in ("synthetic:ptbxl?n=80&rates=100,500", "synthetic:g12ec?n=60")
                     for t in ("synthetic:g12ec?n=50", "synthetic:ptbxl?n=70&noise=0")}
    assert {c.finetune.data.spec for c in matrix if not c.pretrain} == {t for _, t in pairs}
    assert len({repr(c.pretrain) for c in matrix if c.pretrain}) == 2  # shared by reuse key per source
    for bad, message in (("label_shift=bayes", "axis label_shift: must be one of none, prior, em, reweight"),
                         ("target_fs=10", "record_fs"),
                         ("fs_augment=500,50", "fs_augment"), ("source=nosuch:x", "not a dataset spec")):
        with pytest.raises(EcgtlError, match=message):
            parse_axes(bad)


def test_the_sources_preset_pairs_an_imported_encoder_with_scratch_and_with_the_own_pretraining(store, tmp_path):
    import torch

    import ecgtl.stages.ablation as ablation_module
    from ecgtl.models import create_model

    torch.manual_seed(1)
    checkpoint = tmp_path / "encoder.pt"
    torch.save(create_model("xresnet1d18", 18).state_dict(), checkpoint)
    config = AblationConfig(preset="sources", **{**TINY, "seeds": 1, "axes": "target_fraction=1"},
                            starting_points=f"ecgtl|torch:{checkpoint}")
    cells = expand(config)
    imported = [c for c in cells if c.axes["starting_point"] == f"torch:{checkpoint}"]
    assert len(cells) == 3 and len(imported) == 1 and imported[0].pretrain is None
    assert sum(t["kind"] == "pretrain" for t in tasks_of(cells)) == 1  # only ecgtl's own
    results = ablation_module.ablation(config)
    assert (results["cells"]["status"] == "finished").all()
    pairs = results["paired"]
    assert sorted(zip(pairs["reference"], pairs["starting_point"].fillna("-"), strict=True)) == [
        ("ecgtl", f"torch:{checkpoint}"), ("scratch", "ecgtl"), ("scratch", f"torch:{checkpoint}")]
    assert pairs["diff"].notna().all()
    with pytest.raises(EcgtlError, match="axis starting_point: 'models:/x' is neither ecgtl nor torch:PATH or hf:"):
        expand(AblationConfig(preset="sources", quick=True, starting_points="models:/x"))
