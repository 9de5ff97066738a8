"""Signal maths shared by the cache, the input pipeline, serving and predict.

`standardise_records`: the per-record amplitude convention (`data.scaling=record`). Some datasets are
distributed already standardised per record and lead (the shared real PTB-XL subset: band-passed, mean 0,
sd 1), while others, the synthetic data and served inputs are in mV. A model trained on one and applied to the
other sees inputs of another scale; standardising every record the same way on both sides removes that
difference (and, with it, absolute amplitude, which voltage criteria such as LVH use).
"""

from __future__ import annotations

import numpy as np

# A lead whose spread is below this (in its own units) is flat: it becomes zeros instead of amplified noise.
FLAT_LEAD_SD = 1e-6


def standardise_records(signals: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Each lead of each record to mean 0 and sd 1 over its real samples; padding stays 0.

    `signals` [records, leads, samples]; `lengths` [records], real samples per record (default: all).
    Returns float32 of the same shape. Statistics in float64, so long records lose no precision.
    """
    signals = np.asarray(signals)
    n_samples = signals.shape[-1]
    lengths = np.full(len(signals), n_samples) if lengths is None else np.clip(np.asarray(lengths), 1, n_samples)
    real = (np.arange(n_samples)[None, :] < lengths[:, None])[:, None, :]  # [records, 1, samples]
    block = signals.astype(np.float64)
    count = lengths[:, None].astype(np.float64)
    mean = np.where(real, block, 0.0).sum(axis=-1) / count
    centred = np.where(real, block - mean[..., None], 0.0)
    sd = np.sqrt((centred ** 2).sum(axis=-1) / count)
    scale = np.where(sd > FLAT_LEAD_SD, sd, np.inf)  # flat leads -> 0
    return (centred / scale[..., None]).astype(np.float32)
