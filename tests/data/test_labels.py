"""The shared 18-label map against the challenge's published per-source counts, and PTB-XL label sets."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from conftest import SCP_STATEMENTS

from ecgtl.data.labels import (
    SHARED18,
    SHARED18_LABEL_SET,
    get_label_set,
    ptbxl_label_set,
    published_counts,
)
from ecgtl.errors import DatasetError

# Rows of the challenge's dx_mapping tables (2020 columns) for the 18 classes and the two equivalent codes.
DX_MAPPING_ROWS = """Dx,SNOMED CT Code,Abbreviation,CPSC,CPSC-Extra,StPetersburg,PTB,PTB-XL,Georgia,Total
1st degree av block,270492004,IAVB,722,106,0,0,797,769,2394
complete right bundle branch block,713427006,CRBBB,0,113,0,0,542,28,683
incomplete right bundle branch block,713426002,IRBBB,0,86,0,0,1118,407,1611
left anterior fascicular block,445118002,LAnFB,0,0,0,0,1626,180,1806
left bundle branch block,164909002,LBBB,236,38,0,0,536,231,1041
nonspecific intraventricular conduction disorder,698252002,NSIVCB,0,4,1,0,789,203,997
prolonged qt interval,111975006,LQT,0,4,0,0,118,1391,1513
2nd degree av block,195042002,IIAVB,0,21,0,0,14,23,58
anterior ischemia,426434006,AnMIs,0,0,0,0,44,281,325
incomplete left bundle branch block,251120003,ILBBB,0,42,0,0,77,86,205
inferior ischaemia,425419005,IIs,0,0,0,0,219,451,670
lateral ischaemia,425623009,LIs,0,0,0,0,142,903,1045
left atrial enlargement,67741000119109,LAE,0,1,0,0,427,870,1298
left posterior fascicular block,445211001,LPFB,0,0,0,0,177,25,202
left ventricular hypertrophy,164873001,LVH,0,158,10,0,2359,1232,3759
nonspecific st t abnormality,428750005,NSSTTA,0,1290,0,0,381,1883,3554
right ventricular hypertrophy,89792004,RVH,0,20,0,0,126,86,232
ventricular hypertrophy,266249003,VH,0,5,0,13,30,71,119
right bundle branch block,59118001,RBBB,1857,1,2,0,0,542,2402
atrial fibrillation,164889003,AF,1221,153,2,15,1514,570,3475
"""

PUBLISHED = {  # PTB-XL / Georgia, from the issue
    "1AVB": (797, 769), "CRBBB": (542, 28), "IRBBB": (1118, 407), "LAFB": (1626, 180), "CLBBB": (536, 231),
    "IVCD": (789, 203), "LNGQT": (118, 1391), "2AVB": (14, 23), "ISCAN": (44, 281), "ILBBB": (77, 86),
    "ISCIN": (219, 451), "ISCLA": (142, 903), "LAO/LAE": (427, 870), "LPFB": (177, 25), "LVH": (2359, 1232),
    "NDT": (381, 1883), "RVH": (126, 86), "SEHYP": (30, 71),
}


def test_shared18_codes_give_published_counts_without_equivalences():
    table = pd.read_csv(io.StringIO(DX_MAPPING_ROWS))
    ptbxl = published_counts(table, "PTB-XL")
    georgia = published_counts(table, "Georgia")
    assert tuple(ptbxl) == SHARED18
    assert {name: (ptbxl[name], georgia[name]) for name in SHARED18} == PUBLISHED


def test_equivalences_merge_rbbb_into_crbbb():
    table = pd.read_csv(io.StringIO(DX_MAPPING_ROWS))
    assert published_counts(table, "Georgia", equivalences=True)["CRBBB"] == 28 + 542
    records = [["59118001"], ["713427006", "164889003"], ["733534002"], []]
    with_eq = SHARED18_LABEL_SET.encode_snomed(records, equivalences=True)
    without = SHARED18_LABEL_SET.encode_snomed(records, equivalences=False)
    crbbb, clbbb = SHARED18.index("CRBBB"), SHARED18.index("CLBBB")
    assert with_eq[:, crbbb].tolist() == [1, 1, 0, 0] and without[:, crbbb].tolist() == [0, 1, 0, 0]
    assert with_eq[:, clbbb].tolist() == [0, 0, 1, 0] and without[:, clbbb].tolist() == [0, 0, 0, 0]
    assert with_eq.sum() == 3


@pytest.mark.parametrize("folder", ["cinc2020", "cinc2021"])
def test_counts_from_the_real_challenge_tables(shared_samples, folder):
    maps = shared_samples / "label-maps" / folder
    table = pd.concat([pd.read_csv(maps / "dx_mapping_scored.csv"), pd.read_csv(maps / "dx_mapping_unscored.csv")])
    ptbxl_column = "PTB-XL" if folder == "cinc2020" else "PTB_XL"
    ptbxl, georgia = published_counts(table, ptbxl_column), published_counts(table, "Georgia")
    assert {name: (ptbxl[name], georgia[name]) for name in SHARED18} == PUBLISHED


def test_scp_encoding_of_shared18():
    records = [("LVH", "NDT", "SR"), ("NORM",), ("LAO/LAE", "2AVB")]
    matrix = SHARED18_LABEL_SET.encode_scp(records)
    assert matrix.shape == (3, 18)
    assert [SHARED18[j] for j in np.flatnonzero(matrix[0])] == ["LVH", "NDT"]
    assert matrix[1].sum() == 0
    assert sorted(SHARED18[j] for j in np.flatnonzero(matrix[2])) == ["2AVB", "LAO/LAE"]


def test_ptbxl_label_sets_follow_scp_statements():
    assert ptbxl_label_set("all", SCP_STATEMENTS).classes == tuple(sorted(SCP_STATEMENTS.index))
    assert ptbxl_label_set("form", SCP_STATEMENTS).classes == ("LVOLT", "NDT")
    assert ptbxl_label_set("rhythm", SCP_STATEMENTS).classes == ("AFIB", "SR")
    superdiag = ptbxl_label_set("superdiagnostic", SCP_STATEMENTS)
    assert superdiag.classes == ("CD", "HYP", "MI", "NORM", "STTC")
    matrix = superdiag.encode_scp([("IMI", "ASMI"), ("CRBBB", "1AVB", "SR")])
    assert matrix.tolist() == [[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]]
    sub = ptbxl_label_set("subdiagnostic", SCP_STATEMENTS)
    assert "AMI" in sub.classes and "IMI" in sub.classes and "_AVB" in sub.classes


def test_real_scp_statements_give_strodthoff_class_counts(shared_samples):
    statements = pd.read_csv(shared_samples / "ptbxl-excerpt" / "scp_statements.csv", index_col=0)
    sizes = {kind: len(ptbxl_label_set(kind, statements).classes)
             for kind in ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")}
    assert sizes == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}


def test_unknown_label_sets_are_clear_errors():
    with pytest.raises(DatasetError, match="unknown label set 'nope'"):
        get_label_set("nope")
    with pytest.raises(DatasetError, match="needs PTB-XL's scp_statements.csv"):
        get_label_set("ptbxl-diagnostic")
    with pytest.raises(DatasetError, match="SCP codes only"):
        ptbxl_label_set("all", SCP_STATEMENTS).encode_snomed([["164873001"]])


# ------------------------------------------------------------------------------ early CinC abbreviations
def test_early_cpsc_abbreviations_get_their_classes_and_unknown_codes_are_reported(tmp_path):
    """The first 2020 CPSC release writes `#Dx: RBBB`, `I-AVB`, `AF`, `Normal`: every label used to be lost."""
    from conftest import digital_ecg, write_cinc

    from ecgtl.data.cinc import CincSource
    from ecgtl.data.inspect import inspect_dataset

    dx = ["RBBB", "I-AVB", "AF,RBBB", "Normal", "LBBB", "PVC", "XYZ", "270492004,QQQ"]
    for i, value in enumerate(dx):
        write_cinc(tmp_path / "cpsc", f"A{i + 1:04d}", digital_ecg(seed=i), dx=value)
    source = CincSource(tmp_path / "cpsc")
    assert list(source.index["codes"])[:6] == [("59118001",), ("270492004",), ("164889003", "59118001"),
                                              ("426783006",), ("164909002",), ("427172004",)]
    assert [u for u in source.index["unknown_codes"] if u] == [("XYZ",), ("QQQ",)]
    labels, classes = source.label_matrix("shared18")
    positive = {record: [classes[j] for j in np.flatnonzero(row)] for record, row in zip(source.index["record_id"], labels, strict=True)}
    assert positive["A0001"] == ["CRBBB"] and positive["A0002"] == ["1AVB"] and positive["A0005"] == ["CLBBB"]
    assert positive["A0008"] == ["1AVB"]
    cinc2021, names = source.label_matrix("cinc2021")
    assert [names[j] for j in np.flatnonzero(cinc2021[2])] == ["AF", "CRBBB"]
    report = inspect_dataset(str(tmp_path / "cpsc"), progress=False).render()
    assert "2 records carry codes ecgtl does not know" in report and "XYZ (1)" in report and "QQQ (1)" in report
    assert "shared18: 5 records with at least one class" in report


def test_shipped_code_table_is_the_challenge_tables(shared_samples):
    """`cinc_codes.csv` holds every code and abbreviation of the 2020 and 2021 dx_mapping tables, no other."""
    from ecgtl.data.labels import cinc_vocabulary

    expected = {}
    for path in sorted((shared_samples / "label-maps").glob("*/dx_mapping_*.csv")):
        table = pd.read_csv(path, dtype=str)
        code_column = next(c for c in table.columns if c.replace(" ", "").lower() == "snomedctcode")
        expected.update(zip(table[code_column].str.strip(), table["Abbreviation"].str.strip(), strict=True))
    known, by_abbreviation = cinc_vocabulary()
    assert known == set(expected)
    for code, abbreviation in expected.items():
        assert by_abbreviation[abbreviation.upper().replace("-", "")] == code
