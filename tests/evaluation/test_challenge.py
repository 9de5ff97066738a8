"""The CinC 2020 challenge metric on small hand-computed cases, and weights tables with equivalences."""

from __future__ import annotations

import numpy as np
import pytest

from ecgtl.evaluation.challenge import challenge_score, load_weights, modified_confusion

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
    assert challenge_score(labels, labels, WEIGHTS, CODES) == pytest.approx(1.0)
    inactive = np.array([[0, 0, 1]] * 3)
    assert challenge_score(labels, inactive, WEIGHTS, CODES) == pytest.approx(0.0)
    # Swap IAVB and AF. Each wrong record has a union of 2 classes, so it adds weight / 2:
    # observed = 0.3/2 + 0.3/2 + 1 = 1.3; correct = 3; inactive = 0.5/2 + 0.5/2 + 1 = 1.5.
    swapped = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert challenge_score(labels, swapped, WEIGHTS, CODES) == pytest.approx((1.3 - 1.5) / (3 - 1.5))


def test_weights_table_merges_equivalent_codes(tmp_path):
    table_2020 = "," + ",".join(["713427006", "164889003", "59118001"]) + "\n"
    rows = [["713427006", 1, 0.4, 1], ["164889003", 0.4, 1, 0.4], ["59118001", 1, 0.4, 1]]
    table_2020 += "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    (tmp_path / "w2020.csv").write_text(table_2020)
    weights, codes = load_weights(tmp_path / "w2020.csv")
    assert codes == ("713427006", "164889003") and weights.shape == (2, 2)
    (tmp_path / "w2021.csv").write_text(",713427006|59118001,164889003\n713427006|59118001,1,0.4\n164889003,0.4,1\n")
    weights, codes = load_weights(tmp_path / "w2021.csv")
    assert codes == ("713427006", "164889003") and weights[0, 1] == pytest.approx(0.4)


def test_real_weights_tables_load(shared_samples):
    for year, expected in (("cinc2020", 24), ("cinc2021", 26)):
        weights, codes = load_weights(shared_samples / "label-maps" / year / "weights.csv")
        assert weights.shape == (len(codes), len(codes)) and np.allclose(np.diag(weights), 1)
        assert "426783006" in codes and "59118001" not in codes
        assert len(codes) >= expected - 2
