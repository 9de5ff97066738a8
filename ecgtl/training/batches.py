"""Where the engine's training batches come from, so that an accelerator never waits for numpy.

Both input paths cut their crops from one plan (`pipeline.crop_plan`: the same shuffle and crop starts from
`default_rng([seed, epoch])`), so they train on the same batches:
- resident (`ResidentSplit`): the training records as the pipeline takes them (record standardisation, lead
  selection) in one tensor on the device; a batch is one gather there, then the input domain and the lead scaler
  in torch. 100 Hz PTB-XL's training split takes about 0.8 GB (17 k records x 12 leads x 1000 samples x 4 bytes).
- prefetched (`prefetched`): the pipeline's numpy batches, made by a background thread `depth` batches ahead and
  copied to the device (from pinned memory on CUDA) while the current batch trains; `depth=0` makes them on the
  training thread.
`TrainInputs` chooses once per fit (`train.device_cache`, `train.prefetch`; accelerator.use_device_cache).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch

from ecgtl.data.dataset import valid_lengths
from ecgtl.pipeline import InputPipeline, crop_plan
from ecgtl.training.accelerator import use_device_cache

Batch = tuple[list[torch.Tensor], torch.Tensor]  # views [batch, channels, input_length] each, labels [batch, classes]
T = TypeVar("T")
_STAGE_RECORDS = 1024  # records standardised and copied to the device at a time


class ResidentSplit:
    """The training rows of `split` on `device` as the pipeline's records; batches cut there."""

    def __init__(self, pipeline: InputPipeline, split, rows: np.ndarray, device: torch.device) -> None:
        if pipeline.scaler is None:
            raise ValueError("the pipeline's scaler must be fitted before its records go to the device")
        self.pipeline, self.device, self.rows = pipeline, device, np.unique(rows)
        self.lengths = valid_lengths(split)
        samples = split.signals.shape[-1]
        self.signals = torch.empty((len(self.rows), pipeline.n_channels, samples), dtype=torch.float32, device=device)
        for start in range(0, len(self.rows), _STAGE_RECORDS):
            chunk = self.rows[start:start + _STAGE_RECORDS]
            records = pipeline.records(np.asarray(split.signals[chunk]), self.lengths[chunk])[:, pipeline.lead_index]
            self.signals[start:start + len(chunk)] = torch.from_numpy(np.ascontiguousarray(records, dtype=np.float32))
        self.labels = torch.from_numpy(split.labels[self.rows].astype(np.float32)).to(device)
        self.mean = torch.from_numpy(pipeline.scaler.mean).to(device)[None, :, None]
        self.std = torch.from_numpy(pipeline.scaler.std).to(device)[None, :, None]
        self.steps = torch.arange(pipeline.crop, device=device)[None, :]

    @staticmethod
    def nbytes(pipeline: InputPipeline, split, rows: np.ndarray) -> int:
        """Device memory the resident records of `rows` take (float32)."""
        return len(np.unique(rows)) * pipeline.n_channels * split.signals.shape[-1] * 4

    def batch(self, batch_rows: np.ndarray, offsets: list[np.ndarray]) -> Batch:
        """The views and labels of one planned batch (rows of the split [b], crop starts [b] per view)."""
        index = torch.from_numpy(np.searchsorted(self.rows, batch_rows)).to(self.device)
        records = self.signals[index]
        channels, samples = records.shape[1], records.shape[2]
        views = []
        for view_offsets in offsets:
            positions = (torch.from_numpy(view_offsets).to(self.device)[:, None] + self.steps).clamp_(max=samples - 1)
            windows = torch.gather(records, 2, positions[:, None, :].expand(-1, channels, -1))
            views.append((_to_domain(windows, self.pipeline.domain) - self.mean) / self.std)
        return views, self.labels[index]


def _to_domain(windows: torch.Tensor, domain: str) -> torch.Tensor:
    """pipeline.to_domain in torch (time windows [n, channels, crop] -> the model's input domain)."""
    if domain == "time":
        return windows
    spectrum = torch.fft.rfft(windows, dim=-1)
    return {"fft_abs": torch.abs, "fft_real": torch.real, "fft_imag": torch.imag}[domain](spectrum).contiguous()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` made by a background thread up to `depth` ahead, in order; an error there is raised here, and the
    thread stops when the consumer does (a pruned trial, an interrupt)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="ecgtl-prefetch", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _to_device(batch: Batch, device: torch.device) -> Batch:
    views, labels = batch
    if device.type == "cpu":
        return views, labels
    pin = device.type == "cuda"

    def move(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=pin)

    return [move(view) for view in views], move(labels)


class TrainInputs:
    """One fit's training input path, chosen once: resident on the device, or prefetched from the memmap."""

    def __init__(self, pipeline: InputPipeline, split, rows: np.ndarray, device: torch.device, *,
                 device_cache: str = "auto", prefetch: int = 2) -> None:
        self.pipeline, self.split, self.rows, self.device, self.prefetch = pipeline, split, rows, device, prefetch
        nbytes = ResidentSplit.nbytes(pipeline, split, rows)
        self.resident = (ResidentSplit(pipeline, split, rows, device)
                         if use_device_cache(device_cache, device, nbytes) else None)

    def describe(self) -> str:
        if self.resident is not None:
            size = self.resident.signals.numel() * 4 / 2**20
            return f"training records resident on {self.device} ({size:,.0f} MiB), crops cut there"
        if self.prefetch:
            return f"batches prepared {self.prefetch} ahead by a background thread, copied to {self.device}"
        return f"batches prepared on the training thread, copied to {self.device}"

    def epoch(self, batch_size: int, seed: int, epoch: int, n_views: int = 1, min_batch: int = 1) -> Iterator[Batch]:
        """One epoch's batches on the device: `n_views` crops per record (pipeline.train_views' batches; batches
        under `min_batch` records per process skipped; under torchrun, this process's part of each)."""
        if self.resident is not None:
            plan = crop_plan(self.rows, self.resident.lengths, self.pipeline.crop, batch_size, seed, epoch, n_views,
                             min_batch)
            return (self.resident.batch(batch_rows, offsets) for batch_rows, offsets in plan)
        batches = (_to_device(batch, self.device) for batch in
                   self.pipeline.train_views(self.split, self.rows, batch_size, seed, epoch, n_views, min_batch))
        return prefetched(batches, self.prefetch) if self.prefetch else batches
