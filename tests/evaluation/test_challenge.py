"""The CinC challenge metric: hand-computed cases (normal-plus-other and empty rows as the final scorers treat
them), weights tables of both vintages with equivalences, and agreement with the official scorers on a fixture."""

from __future__ import annotations

import numpy as np
import pytest

from ecgtl.data.labels import get_label_set
from ecgtl.evaluation.challenge import challenge_score, load_weights, modified_confusion, weights_for
from ecgtl.evaluation.metrics import macro_auc

CODES = ["270492004", "164889003", "426783006"]  # IAVB, AF, sinus rhythm (normal)
WEIGHTS = np.array([[1.0, 0.3, 0.5], [0.3, 1.0, 0.5], [0.5, 0.5, 1.0]])


def test_modified_confusion_normalises_by_the_union():
    labels = np.array([[1, 0, 0], [1, 1, 0]])
    outputs = np.array([[1, 1, 0], [1, 0, 0]])
    # Record 1: union {0, 1} -> pairs (0,0), (0,1) add 1/2 each. Record 2: union {0, 1} -> (0,0), (1,0) add 1/2.
    expected = np.array([[1.0, 0.5, 0], [0.5, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(modified_confusion(labels, outputs), expected)


def test_challenge_score_hand_computed():
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert challenge_score(labels, labels, WEIGHTS, normal_column=2) == pytest.approx(1.0)
    inactive = np.array([[0, 0, 1]] * 3)
    assert challenge_score(labels, inactive, WEIGHTS, normal_column=2) == pytest.approx(0.0)
    # Swap IAVB and AF. Each wrong record has a union of 2 classes, so it adds weight / 2:
    # observed = 0.3/2 + 0.3/2 + 1 = 1.3; correct = 3; inactive = 0.5/2 + 0.5/2 + 1 = 1.5.
    swapped = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert challenge_score(labels, swapped, WEIGHTS, normal_column=2) == pytest.approx((1.3 - 1.5) / (3 - 1.5))


def test_perfect_outputs_no_better_than_the_reference_score_zero_not_nan():
    only_normal = np.array([[0, 0, 1]] * 4)
    assert challenge_score(only_normal, only_normal, WEIGHTS, normal_column=2) == 0.0


# Records exercising what early 2020 scorers rewrote and the final ones do not: normal together with another
# class (labels and outputs) and a record without any output. Columns IAVB, AF, NSR.
EDGE_LABELS = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1]])
EDGE_OUTPUTS = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]])


def test_normal_plus_other_and_empty_rows_score_as_the_final_scorers_do(tmp_path):
    """By hand, from the final formula (each record adds W[i, j] / |labels union outputs| per label i, output j):
    observed: r1 no output -> 0; r2 {AF,NSR}x{AF,NSR}: (1 + .5 + .5 + 1)/2 = 1.5; r3 {AF}x{IAVB,NSR}, union of 3:
    (.3 + .5)/3; r4 1.  correct: 1 + 1.5 + 1 + 1 = 4.5.  inactive (NSR only): r1 .5/2, r2 (1 + .5)/2, r3 .5/2,
    r4 1 = 2.25.  The early 2020 rule would have made r1 output NSR and dropped NSR from r2 and r3."""
    expected = (1.5 + 0.8 / 3 + 1 - 2.25) / (4.5 - 2.25)
    assert expected == pytest.approx(0.229630, abs=1e-6)
    codes = {"IAVB": ("270492004",), "AF": ("164889003",), "NSR": ("426783006",)}
    for name, header in (("w2020.csv", ["270492004", "164889003", "426783006"]),
                         ("w2021.csv", ["270492004", "164889003|999", "426783006"])):
        match = weights_for(["IAVB", "AF", "NSR"], codes, load_weights(_write_table(tmp_path / name, header, WEIGHTS)))
        assert match.complete and match.normal_column == 2
        assert match.score(EDGE_LABELS, EDGE_OUTPUTS) == pytest.approx(expected, abs=1e-12), name
        # All outputs negative: the observed score is 0, so -inactive / (correct - inactive), not the reference's 0.
        assert match.score(EDGE_LABELS, np.zeros_like(EDGE_OUTPUTS)) == pytest.approx(-2.25 / 2.25), name
    assert challenge_score(EDGE_LABELS, EDGE_OUTPUTS, WEIGHTS, normal_column=2) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("year", "undefined"), [("2020", "nan"), ("2021", 0.0)])
def test_where_the_labels_score_like_the_reference_each_vintage_returns_what_its_scorer_does(tmp_path, year, undefined):
    header = {"2020": ["270492004", "164889003", "426783006"], "2021": ["270492004", "164889003|999", "426783006"]}[year]
    table = load_weights(_write_table(tmp_path / "weights.csv", header, WEIGHTS))
    assert table.vintage == year
    codes = {"IAVB": ("270492004",), "AF": ("164889003",), "NSR": ("426783006",)}
    only_normal = np.array([[0, 0, 1]] * 3)
    score = weights_for(["IAVB", "AF", "NSR"], codes, table).score(only_normal, only_normal)
    assert np.isnan(score) if undefined == "nan" else score == undefined


def _loop_reference(labels, outputs, weights, normal_column):
    """The final scorers' formula written as they state it, record by record (an independent check of the
    matrix form): every (label i, output j) pair of a record adds 1 / max(1, |labels union outputs|)."""
    def confusion(y, o):
        a = np.zeros(weights.shape)
        for record_labels, record_outputs in zip(y, o, strict=True):
            share = 1.0 / max(1, int(np.logical_or(record_labels, record_outputs).sum()))
            for i in np.flatnonzero(record_labels):
                for j in np.flatnonzero(record_outputs):
                    a[i, j] += share
        return np.nansum(weights * a)
    inactive = np.zeros_like(labels)
    inactive[:, normal_column] = 1
    observed, correct, reference = confusion(labels, outputs), confusion(labels, labels), confusion(labels, inactive)
    return (observed - reference) / (correct - reference)


def _write_table(path, header_codes, weights):
    lines = ["," + ",".join(header_codes)] + [",".join([c, *map(str, row)]) for c, row in zip(header_codes, weights, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_weights_tables_of_both_layouts_merge_equivalent_codes(tmp_path):
    table_2020 = _write_table(tmp_path / "w2020.csv", ["713427006", "164889003", "59118001", "164909002"],
                              [[1, 0.4, 1, 0.3], [0.4, 1, 0.4, 0.2], [1, 0.4, 1, 0.3], [0.3, 0.2, 0.3, 1]])
    loaded = load_weights(table_2020)
    assert loaded.representatives == ("713427006", "164889003", "164909002") and loaded.weights.shape == (3, 3)
    assert loaded.classes[0] == {"713427006", "59118001"} and loaded.vintage == "2020"
    table_2021 = _write_table(tmp_path / "w2021.csv", ["713427006|59118001", "164889003", "733534002|164909002"],
                              [[1, 0.4, 0.3], [0.4, 1, 0.2], [0.3, 0.2, 1]])
    loaded = load_weights(table_2021)
    assert loaded.representatives == ("713427006", "164889003", "733534002") and loaded.vintage == "2021"
    assert loaded.weights[0, 1] == pytest.approx(0.4)


def test_shared18_clbbb_is_scored_with_either_vintage(tmp_path):
    """The 2021 column `733534002|164909002` used to become 733534002 alone, dropping shared18's CLBBB."""
    shared18 = get_label_set("shared18")
    for name, header in (("w2020.csv", ["164909002", "426783006"]), ("w2021.csv", ["733534002|164909002", "426783006"])):
        match = weights_for(shared18.classes, shared18.snomed_codes(),
                            load_weights(_write_table(tmp_path / name, header, np.eye(2))))
        assert [shared18.classes[j] for j in match.columns] == ["CLBBB"] and not match.complete


def _official_fixture(n_classes, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((300, n_classes)) < np.geomspace(0.3, 0.02, n_classes)).astype(int)
    y[y.sum(axis=1) == 0, rng.integers(0, n_classes)] = 1  # every record has a scored label
    logits = 2.0 * y + rng.standard_normal(y.shape) - 1.5
    return y, logits, logits > 0


# Values computed by the official 2021 scorer's functions (evaluation-2021 evaluate_model.py:
# compute_challenge_metric and compute_auc) on `_official_fixture`, in a run outside this repository: oracle
# values, not outputs of ecgtl. (The 2020 value once stored here came from an early 2020 scorer that still had
# the normal-class rule; the final 2020 formula is the 2021 one, checked below against a loop reference.)
OFFICIAL_2021 = (0.5950016023345179, 0.9265979749153366)


@pytest.mark.parametrize("year", ["2020", "2021"])
def test_complete_label_sets_give_the_official_challenge_metric_and_auroc(shared_samples, year):
    table = load_weights(shared_samples / "label-maps" / f"cinc{year}" / "weights.csv")
    label_set = get_label_set(f"cinc{year}")
    match = weights_for(label_set.classes, label_set.snomed_codes(), table)
    assert match.complete and len(label_set.classes) == {"2020": 24, "2021": 26}[year]
    y, logits, outputs = _official_fixture(len(label_set.classes), int(year))
    assert (outputs.sum(axis=1) == 0).any() and (outputs[:, match.columns[match.normal_column]] & (outputs.sum(axis=1) > 1)).any()
    reference = _loop_reference(y[:, match.columns], outputs[:, match.columns], match.weights, match.normal_column)
    assert match.score(y, outputs) == pytest.approx(reference, abs=1e-12)
    if year == "2021":
        challenge, auroc = OFFICIAL_2021
        assert match.score(y, outputs) == pytest.approx(challenge, abs=1e-12)
        assert macro_auc(y, logits) == pytest.approx(auroc, abs=1e-12)
    shared18 = get_label_set("shared18")
    partial = weights_for(shared18.classes, shared18.snomed_codes(), table)
    assert "CLBBB" in [shared18.classes[j] for j in partial.columns] and not partial.complete
