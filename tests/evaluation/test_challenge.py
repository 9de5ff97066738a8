"""The CinC challenge metric: hand-computed cases, weights tables of both vintages with equivalences, and
agreement with the official scorers on a fixture."""

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


def _write_table(path, header_codes, weights):
    lines = ["," + ",".join(header_codes)] + [",".join([c, *map(str, row)]) for c, row in zip(header_codes, weights, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_weights_tables_of_both_layouts_merge_equivalent_codes(tmp_path):
    table_2020 = _write_table(tmp_path / "w2020.csv", ["713427006", "164889003", "59118001", "164909002"],
                              [[1, 0.4, 1, 0.3], [0.4, 1, 0.4, 0.2], [1, 0.4, 1, 0.3], [0.3, 0.2, 0.3, 1]])
    loaded = load_weights(table_2020)
    assert loaded.representatives == ("713427006", "164889003", "164909002") and loaded.weights.shape == (3, 3)
    assert loaded.classes[0] == {"713427006", "59118001"} and loaded.normal_rule
    table_2021 = _write_table(tmp_path / "w2021.csv", ["713427006|59118001", "164889003", "733534002|164909002"],
                              [[1, 0.4, 0.3], [0.4, 1, 0.2], [0.3, 0.2, 1]])
    loaded = load_weights(table_2021)
    assert loaded.representatives == ("713427006", "164889003", "733534002") and not loaded.normal_rule
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


# Values computed by the official scorers' functions (evaluation-2020 evaluate_12ECG_score.py with its normal
# rule; evaluation-2021 evaluate_model.py; compute_challenge_metric and compute_auc) on `_official_fixture`,
# in a run outside this repository. They are oracle values, not outputs of ecgtl.
OFFICIAL = {"2020": (0.618781038426599, 0.934599261731485), "2021": (0.5950016023345179, 0.9265979749153366)}


@pytest.mark.parametrize("year", ["2020", "2021"])
def test_complete_label_sets_give_the_official_challenge_metric_and_auroc(shared_samples, year):
    table = load_weights(shared_samples / "label-maps" / f"cinc{year}" / "weights.csv")
    label_set = get_label_set(f"cinc{year}")
    match = weights_for(label_set.classes, label_set.snomed_codes(), table)
    assert match.complete and len(label_set.classes) == {"2020": 24, "2021": 26}[year]
    y, logits, outputs = _official_fixture(len(label_set.classes), int(year))
    challenge, auroc = OFFICIAL[year]
    assert match.score(y, outputs) == pytest.approx(challenge, abs=1e-12)
    assert macro_auc(y, logits) == pytest.approx(auroc, abs=1e-12)
    shared18 = get_label_set("shared18")
    partial = weights_for(shared18.classes, shared18.snomed_codes(), table)
    assert "CLBBB" in [shared18.classes[j] for j in partial.columns] and not partial.complete
