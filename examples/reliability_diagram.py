"""Reliability diagram example: an over-confident classifier before and after calibration.

Simulates validation and test logits of an over-confident multi-label model, fits the calibrators on
validation, and writes the library's reliability diagram (pooled over classes) as PNG and HTML.

    python examples/reliability_diagram.py docs/reliability.png
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import expit

from ecgtl.evaluation.report import evaluate_predictions
from ecgtl.plotting import save_figure


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(-1.5, 1.6, size=(n, 6))
    y = (rng.random(true_logits.shape) < expit(true_logits)).astype(int)
    return y, 2.5 * true_logits + 0.8  # too sharp and shifted: over-confident


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "reliability.png"
    (y_val, z_val), (y_test, z_test) = simulate(3000, 0), simulate(3000, 1)
    report = evaluate_predictions(y_val, z_val, y_test, z_test, [f"class {i}" for i in range(6)], n_bootstrap=200)
    print(report.summary())
    save_figure(report.figures["reliability"], out, scale=1.5)
    save_figure(report.figures["reliability"], out.rsplit(".", 1)[0] + ".html")
