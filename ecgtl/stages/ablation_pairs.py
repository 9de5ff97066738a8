"""Paired differences between ablation cells: the primitives `ablation_results.py` (init against scratch,
objective against supervised) and `ablation_questions.py` (label shift, rate augmentation, transfer matrix) use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgtl.errors import EcgtlError, EvaluationError
from ecgtl.evaluation.metrics import bootstrap_over_seeds

TARGET_KEYS = ("target", "target_fraction", "fs", "target_fs", "domain", "leads")


def has_axis(frame: pd.DataFrame, axis: str) -> bool:
    """An axis some cell has (optional axes are None throughout where the grid does not name them)."""
    return axis in frame and frame[axis].notna().any()


def paired_rows(chosen: pd.DataFrame, reference: pd.Series, keys: list[str], match: list[str],
                predictions: dict, n_resamples: int, label: dict) -> list[dict]:
    """Per group of `chosen` (by `keys`), its difference from the `reference` run of the same `match` values
    and seed, on the same test records, over the seeds both have."""
    rows = []
    for values, group in chosen.groupby(keys, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        by_key = dict(zip(keys, values, strict=True))
        pairs = [(r, reference.get((*(by_key[k] for k in match), s)))
                 for r, s in zip(group["run_id"], group["seed"], strict=True)]
        pairs = [(a, b) for a, b in pairs if b is not None]
        if not pairs:
            continue
        if any(list(predictions[a]["test"]["record_ids"]) != list(predictions[b]["test"]["record_ids"]) for a, b in pairs):
            raise EcgtlError("paired cells were scored on different test records")
        row = {**by_key, **label}
        try:
            summary = bootstrap_over_seeds([predictions[a]["test"]["labels"] for a, _ in pairs],
                                           [predictions[a]["test"]["logits"] for a, _ in pairs],
                                           [predictions[b]["test"]["logits"] for _, b in pairs], n_resamples=n_resamples)
            row.update(n_seeds=summary.n_seeds, diff=summary.estimate, diff_ci_low=summary.low,
                       diff_ci_high=summary.high, p_value=summary.p_value)
        except EvaluationError as exc:
            row.update(n_seeds=len(pairs), diff=float("nan"), note=str(exc))
        rows.append(row)
    return rows


def mean_sd(part: pd.DataFrame) -> str:
    if part.empty:
        return "–"
    row = part.iloc[0]
    sd = f" ± {row['auc_sd']:.3f}" if np.isfinite(row["auc_sd"]) else ""
    return f"{row['auc_mean']:.3f}{sd} (n={int(row['n_seeds'])})"


def gain_text(gain: pd.DataFrame) -> str:
    if gain.empty or "diff" not in gain or not np.isfinite(gain["diff"].iloc[0]):
        return "–"
    row = gain.iloc[0]
    return f"{row['diff']:+.3f} [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}]"
