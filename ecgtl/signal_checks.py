"""The input contract's one check of the records a model is asked to score: shape [records, 12, samples] (a single
record [12, samples] and an empty batch are told apart), a numeric type, finite values within the plausibility
limit, at least one window. Used by serving, `ecgtl predict`, `ecgtl explain` and the exported ONNX runner, which
ships this file beside itself (numpy only: the runner has neither torch nor ecgtl); the limits come from
`ecgtl.inputs` (the runner reads them from `pipeline.json`, written by the export).
"""

from __future__ import annotations

import numpy as np


def records_problem(signals, *, min_samples: float, max_abs_mv: float, fs: float | None = None, leads: int = 12,
                    max_values: int | None = None) -> str | None:
    """Why a batch of records cannot be scored, in one line, or None when it can (`fs`: their rate, to say the
    window's length in seconds)."""
    signals = np.asarray(signals)
    if signals.dtype.kind not in "fiu":
        return f"input dtype {signals.dtype} is not numeric: send float32 signals in mV"
    if signals.ndim == 2 and signals.shape[0] == leads:
        return (f"input shape {signals.shape} is a single record: send [records, {leads} leads, samples] "
                "(one record: add a first axis)")
    if signals.ndim != 3 or signals.shape[1] != leads:
        return f"input shape {signals.shape}: expected [records, {leads} leads, samples]"
    if signals.shape[0] == 0:
        return "no records"
    if max_values is not None and signals.size > max_values:
        return (f"input holds {signals.size} values, more than the {max_values} one request may carry: send fewer "
                "or shorter records per request")
    if signals.shape[-1] < min_samples:
        if fs:
            return (f"records of {signals.shape[-1]} samples at {fs:g} Hz are shorter than one "
                    f"{min_samples / fs:g} s window")
        return f"records of {signals.shape[-1]} samples are shorter than one window ({min_samples:g} samples)"
    if not np.isfinite(signals).all():
        return "input holds NaN or infinite values"
    if np.abs(signals).max() > max_abs_mv:
        return (f"input holds values beyond ±{max_abs_mv:g} mV ({float(np.abs(signals).max()):.3g}): signals are "
                "expected in mV")
    return None
