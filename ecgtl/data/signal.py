"""Signal maths shared by the cache, the input pipeline, serving and predict: resampling, centre crop/pad and
per-record standardisation.

`standardise_records`: the per-record amplitude convention (`data.scaling=record`). Some datasets are
distributed already standardised per record and lead (the shared real PTB-XL subset: band-passed, mean 0,
sd 1), while others, the synthetic data and served inputs are in mV. A model trained on one and applied to the
other sees inputs of another scale; standardising every record the same way on both sides removes that
difference (and, with it, absolute amplitude, which voltage criteria such as LVH use).
"""

from __future__ import annotations

from fractions import Fraction

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


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (identity when the rates match)."""
    if fs_in == fs_out:
        return signal
    ratio = _ratio(fs_in, fs_out)
    from scipy.signal import resample_poly

    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def _ratio(fs_in: float, fs_out: float) -> Fraction:
    return Fraction(fs_out / fs_in).limit_denominator(1000)


def resample_centre(signal: np.ndarray, fs_in: float, fs_out: float, n_out: int) -> tuple[np.ndarray, int]:
    """`crop_or_pad(resample(signal, fs_in, fs_out), n_out)`, computed on the input window that the centre crop
    needs (plus the filter's reach), so memory and time do not grow with the record's length."""
    ratio = _ratio(fs_in, fs_out) if fs_in != fs_out else Fraction(1)
    up, down = ratio.numerator, ratio.denominator
    length = signal.shape[-1]
    full_out = -(-length * up // down)  # resample_poly's output length
    if full_out <= n_out:
        return crop_or_pad(resample(signal, fs_in, fs_out), n_out)
    start_out = (full_out - n_out) // 2
    reach = -(-10 * max(up, down) // up) + 1  # input samples the polyphase filter looks past its output
    first = max(0, (start_out * down // up - reach) // down * down)  # a multiple of down: outputs stay aligned
    last = min(length, -(-(start_out + n_out) * down // up) + reach)
    window = resample(signal[..., first:last], fs_in, fs_out)
    offset = start_out - first * up // down
    return window[..., offset:offset + n_out], n_out


def crop_or_pad(signal: np.ndarray, n_samples: int) -> tuple[np.ndarray, int]:
    """Centre-crop or zero-pad (at the end) to `n_samples`; returns the array and how many samples are real."""
    length = signal.shape[-1]
    if length >= n_samples:
        start = (length - n_samples) // 2
        return signal[..., start:start + n_samples], n_samples
    padded = np.zeros((*signal.shape[:-1], n_samples), dtype=signal.dtype)
    padded[..., :length] = signal
    return padded, length
