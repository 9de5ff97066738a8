"""Which evaluated records a model was trained on: same dataset by id, PTB-XL inside CinC by ecg_id."""

from __future__ import annotations

from ecgtl.data.lineage import TrainingRecords, fingerprint_ids, overlaps
from ecgtl.data.sources import dataset_identity


def test_same_dataset_counts_by_record_id_and_other_datasets_do_not():
    trained = TrainingRecords.of("cinc:/data/georgia", "cinc:/data/georgia", 0, ["E00001", "E00002", "E00003"])
    assert trained.seen("cinc:/data/georgia", ["E00003", "E00009", "E00001"]) == ["E00003", "E00001"]
    assert trained.seen("cinc:/data/other", ["E00001"]) == []  # the same name in another dataset is another record
    assert TrainingRecords.from_dict(trained.to_dict()) == trained
    assert trained.fingerprint == fingerprint_ids(["E00003", "E00001", "E00002"])


def test_native_ptbxl_records_are_recognised_inside_a_cinc_release():
    """CinC ships PTB-XL records as HR00001... where the digits are PTB-XL's ecg_id."""
    pretrained = TrainingRecords.of("ptbxl:/data/ptbxl", "ptbxl:/data/ptbxl", 0, ["1", "2", "17"])
    target = TrainingRecords.of("cinc:/data/georgia", "cinc:/data/georgia", 0, ["E00005"])
    evaluated = ["HR00001", "HR00003", "HR00017", "E00005", "E00006", "S0001"]
    found = overlaps([pretrained, target], "cinc:/data/cinc2021", evaluated)
    # Any CinC folder holds PTB-XL as HR...; E00005 is a Georgia name, but this is another folder.
    assert [(o.training_spec, o.record_ids) for o in found] == [("ptbxl:/data/ptbxl", ("HR00001", "HR00017"))]
    found = overlaps([pretrained, target], "cinc:/data/georgia", evaluated)
    assert [(o.training_spec, o.record_ids) for o in found] == [("ptbxl:/data/ptbxl", ("HR00001", "HR00017")),
                                                                 ("cinc:/data/georgia", ("E00005",))]
    assert "2 of 6 evaluated records were training records" in found[0].describe(6)


def test_synthetic_ptbxl_ids_are_not_real_ecg_ids():
    synthetic = TrainingRecords.of("synthetic:ptbxl?n=3000&seed=0", "synthetic:ptbxl?n=3000&seed=0", 0, ["1", "2"])
    assert synthetic.seen("cinc:/data/cinc2021", ["HR00001", "HR00002"]) == []


def test_a_synthetic_dataset_is_the_same_wherever_its_cache_lies(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGTL_CACHE_DIR", str(tmp_path / "a"))
    first = dataset_identity("synthetic:g12ec?seed=2&n=60")
    monkeypatch.setenv("ECGTL_CACHE_DIR", str(tmp_path / "b"))
    assert dataset_identity("synthetic:g12ec?n=60&seed=2") == first == "synthetic:g12ec?n=60&seed=2"
    assert dataset_identity(f"cinc:{tmp_path}") == f"cinc:{tmp_path.resolve()}"
