"""Numpy building blocks of the input pipeline (`ecgtl.pipeline`): the per-channel scaler, real lengths,
training batch bounds and sliding windows.

Training draws random crops (2.5 s by default) inside each record's real (unpadded) samples; evaluation cuts
every record into sliding windows (stride 1.25 s) whose logits are aggregated by max (or mean) over the
record, as in Strodthoff et al. 2020. Batches are gathered from the memory-mapped arrays with numpy, which is
far cheaper than a torch DataLoader with per-item Python calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgtl.data.cache import SplitData


@dataclass
class LeadScaler:
    """Per-lead standardisation fitted on the training split; stored with the model."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, signals: np.ndarray, valid_samples: np.ndarray | None = None, chunk: int = 512) -> LeadScaler:
        total = np.zeros(signals.shape[1])
        squares = np.zeros(signals.shape[1])
        count = 0
        for start in range(0, len(signals), chunk):
            block = np.asarray(signals[start:start + chunk], dtype=np.float64)
            if valid_samples is not None:  # padding zeros are not data
                mask = np.arange(block.shape[-1])[None, :] < valid_samples[start:start + chunk, None]
                block = np.where(mask[:, None, :], block, np.nan)
            total += np.nansum(block, axis=(0, 2))
            squares += np.nansum(block ** 2, axis=(0, 2))
            count += int(np.isfinite(block[:, 0, :]).sum())
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 1e-12))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))

    def transform(self, batch: np.ndarray) -> np.ndarray:
        return (batch - self.mean[None, :, None]) / self.std[None, :, None]

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> LeadScaler:
        return cls(np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32))


def valid_lengths(split: SplitData) -> np.ndarray:
    n = split.signals.shape[-1]
    if "valid_samples" in split.index:
        return np.clip(split.index["valid_samples"].fillna(n).to_numpy(dtype=int), 1, n)
    return np.full(len(split), n)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of each training batch over n records. Drops nothing: the last batch may be smaller, but
    never a single record (BatchNorm cannot train on one), which joins the batch before it."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def window_starts(length: int, crop: int, stride: int) -> np.ndarray:
    """Starts of sliding windows covering [0, length), the last one flush with the end."""
    if length <= crop:
        return np.array([0])
    starts = np.arange(0, length - crop + 1, stride)
    if starts[-1] != length - crop:
        starts = np.append(starts, length - crop)
    return starts


def sliding_windows(signals: np.ndarray, crop: int, stride: int) -> tuple[np.ndarray, int]:
    """[n, leads, samples] -> [n * w, leads, crop] windows and w (windows per record)."""
    starts = window_starts(signals.shape[-1], crop, stride)
    if signals.shape[-1] < crop:
        signals = np.pad(signals, ((0, 0), (0, 0), (0, crop - signals.shape[-1])))
    windows = np.stack([signals[..., s:s + crop] for s in starts], axis=1)
    return windows.reshape(-1, signals.shape[1], crop), len(starts)
