"""Each of the 18 classes is really in the generated signal: measured by simple delineation, vs normals.

Records are drawn through the generator's own API with exactly one label each, noiseless, so that a plain
delineation (tests/data/measure.py) can read intervals, axis and wave amplitudes.
"""

from __future__ import annotations

import numpy as np
import pytest
from measure import (
    after_qrs_onset,
    frontal_axis_deg,
    p_duration_ms,
    p_terminal_v1,
    pr_interval_ms,
    qrs_duration_ms,
    qrs_part,
    qtc_ms,
    rr_ratio,
    sokolow_lyon_mv,
    t_amplitude,
)

from ecgtl.data.labels import SHARED18
from ecgtl.data.synthetic_physiology import FS_GENERATE, RecordPlan, synthesise_signal

FS = FS_GENERATE
PER_CLASS = 24


def _measure(signal):
    return {
        "qrs": qrs_duration_ms(signal, FS), "pr": pr_interval_ms(signal, FS), "p": p_duration_ms(signal, FS),
        "qtc": qtc_ms(signal, FS), "axis": frontal_axis_deg(signal, FS), "rr_ratio": rr_ratio(signal, FS),
        "v1_terminal_max": qrs_part(signal, FS, "V1", 0.6, 1.0)[0],
        "i_terminal_min": qrs_part(signal, FS, "I", 0.6, 1.0)[1],
        "i_initial_min": qrs_part(signal, FS, "I", 0.0, 0.25)[1],
        "v6_initial_min": qrs_part(signal, FS, "V6", 0.0, 0.25)[1],
        "v1_max": qrs_part(signal, FS, "V1", 0.0, 1.0)[0], "v1_early_max": after_qrs_onset(signal, FS, "V1", 0, 100)[0], "v1_min": qrs_part(signal, FS, "V1", 0.0, 1.0)[1],
        "sokolow": sokolow_lyon_mv(signal, FS), "p_v1_terminal": p_terminal_v1(signal, FS),
        "t_V2": t_amplitude(signal, FS, "V2"), "t_aVF": t_amplitude(signal, FS, "aVF"),
        "t_V6": t_amplitude(signal, FS, "V6"), "t_I": t_amplitude(signal, FS, "I"),
        "t_max": max(abs(t_amplitude(signal, FS, name)) for name in ("I", "II", "V2", "V3", "V4", "V5", "V6")),
    }


def _cohort(label: str | None, count: int, start: int):
    rows = []
    for i in range(count):
        plan = RecordPlan(start + i, f"T{start + i}", (label,) if label else (), (), 30.0 + i * 2,
                          "male" if i % 2 else "female")
        signal, truth = synthesise_signal(plan, "g12ec", seed=11, noise=False)
        rows.append({**_measure(signal), **{f"true_{k}": v for k, v in truth.items()}})
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


@pytest.fixture(scope="module")
def cohorts():
    data = {"NORMAL": _cohort(None, 48, 0)}
    for j, name in enumerate(SHARED18):
        data[name] = _cohort(name, PER_CLASS, 1000 * (j + 1))
    return data


def share(condition) -> float:
    return float(np.mean(condition))


def test_intervals_and_axis_measured_from_normals_match_ground_truth(cohorts):
    normal = cohorts["NORMAL"]
    assert share(np.abs(normal["qrs"] - normal["true_qrs_ms"]) <= 10) >= 0.9
    assert share(np.abs(normal["pr"] - normal["true_pr_ms"]) <= 12) >= 0.9
    assert share(np.abs(normal["p"] - normal["true_p_ms"]) <= 12) >= 0.9
    assert share(np.abs(normal["qtc"] - normal["true_qtc_ms"]) <= 25) >= 0.8
    assert share(np.abs(normal["axis"] - normal["true_axis_deg"]) <= 25) >= 0.9
    # Normal ranges: PR 115-210 ms, QRS < 110 ms, QTc < 470 ms, axis -40..100 degrees.
    assert share((normal["pr"] < 215) & (normal["qrs"] < 112) & (normal["qtc"] < 470)) >= 0.9
    assert share((normal["axis"] > -45) & (normal["axis"] < 105)) >= 0.95


def test_av_blocks(cohorts):
    assert share(cohorts["1AVB"]["pr"] > 200) >= 0.9
    assert share(cohorts["2AVB"]["rr_ratio"] > 1.6) >= 0.9  # non-conducted P waves drop a beat
    assert share(cohorts["NORMAL"]["rr_ratio"] < 1.3) >= 0.95


def test_right_bundle_branch_blocks(cohorts):
    normal, complete, incomplete = cohorts["NORMAL"], cohorts["CRBBB"], cohorts["IRBBB"]
    assert share(complete["qrs"] >= 115) >= 0.9
    assert share((incomplete["qrs"] >= 95) & (incomplete["qrs"] < 125)) >= 0.85
    # rsR' in V1 (late positive forces) and a broad terminal S in I.
    assert share(complete["v1_terminal_max"] > 0.2) >= 0.9 and share(complete["i_terminal_min"] < -0.15) >= 0.8
    assert share(incomplete["v1_terminal_max"] > 0.1) >= 0.8
    assert share(normal["v1_terminal_max"] < 0.1) >= 0.9


def test_left_bundle_branch_blocks_and_ivcd(cohorts):
    normal, complete, incomplete, ivcd = cohorts["NORMAL"], cohorts["CLBBB"], cohorts["ILBBB"], cohorts["IVCD"]
    assert share(complete["qrs"] >= 115) >= 0.9
    assert share((incomplete["qrs"] >= 90) & (incomplete["qrs"] < 125)) >= 0.85
    # No septal q in I / V6, while normals have one.
    for cohort in (complete, incomplete):
        assert share((cohort["i_initial_min"] > -0.005) & (cohort["v6_initial_min"] > -0.005)) >= 0.9
    assert share((normal["i_initial_min"] < -0.005) | (normal["v6_initial_min"] < -0.005)) >= 0.75
    # QS in V1 and discordant T in the lateral leads.
    assert share((complete["v1_min"] < -0.5) & (complete["v1_early_max"] < 0.3 * -complete["v1_min"])) >= 0.9
    assert share(complete["t_V6"] < 0) >= 0.7 and share(normal["t_V6"] > 0) >= 0.9
    # IVCD: wide QRS without a bundle-branch pattern.
    assert share(ivcd["qrs"] >= 110) >= 0.9 and share(ivcd["v1_terminal_max"] < 0.1) >= 0.9


def test_fascicular_blocks_and_axis(cohorts):
    assert share(cohorts["LAFB"]["axis"] <= -30) >= 0.95
    assert share(cohorts["LPFB"]["axis"] >= 90) >= 0.95
    assert share(cohorts["NORMAL"]["axis"] > -30) >= 0.9


def test_hypertrophies(cohorts):
    normal, lvh, rvh, sehyp = cohorts["NORMAL"], cohorts["LVH"], cohorts["RVH"], cohorts["SEHYP"]
    assert np.median(lvh["sokolow"]) > np.median(normal["sokolow"]) + 0.8
    assert share(lvh["sokolow"] > 3.5) >= 0.4 and share(normal["sokolow"] > 3.5) <= 0.15
    assert share((rvh["axis"] > 90) & (rvh["v1_max"] > -rvh["v1_min"])) >= 0.8  # dominant R in V1
    assert share(normal["v1_max"] > -normal["v1_min"]) <= 0.1
    assert share(sehyp["v6_initial_min"] < -0.1) >= 0.9 and share(normal["v6_initial_min"] < -0.05) <= 0.1


def test_left_atrial_enlargement(cohorts):
    normal, lae = cohorts["NORMAL"], cohorts["LAO/LAE"]
    assert share(lae["p"] >= 110) >= 0.85 and share(normal["p"] < 115) >= 0.95
    assert np.median(lae["p_v1_terminal"]) < np.median(normal["p_v1_terminal"]) - 0.05


def test_long_qt(cohorts):
    assert share(cohorts["LNGQT"]["qtc"] > 460) >= 0.9


@pytest.mark.parametrize(("name", "leads"), [("ISCAN", ["t_V2"]), ("ISCIN", ["t_aVF"]), ("ISCLA", ["t_V6", "t_I"])])
def test_ischaemia_inverts_t_in_its_territory(cohorts, name, leads):
    normal, cohort = cohorts["NORMAL"], cohorts[name]
    for lead in leads:
        assert share(cohort[lead] < np.quantile(normal[lead], 0.1)) >= 0.75


def test_non_specific_t_is_flat(cohorts):
    assert share(cohorts["NDT"]["t_max"] < np.quantile(cohorts["NORMAL"]["t_max"], 0.1)) >= 0.7
