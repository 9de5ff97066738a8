"""The input pipeline: what a model sees, as one object that training, evaluation and serving share.

cache signals [records, 12, samples] at `fs`
  -> windows: random crops for training, sliding windows (stride) for evaluation, each `crop_s` long
  (`scaling=record`: each lead of each record first standardised over its real samples, see data/signal.py)
  -> lead selection (`leads`: any subset of the 12 standard leads, in standard order)
  -> input domain per window (`domain`): `time`, or the window's real FFT magnitude (`fft_abs`), real part
     (`fft_real`) or imaginary part (`fft_imag`), `crop // 2 + 1` frequency bins per lead
  -> per-channel standardisation (`LeadScaler`), fitted on the training split's inputs
  -> model -> window logits aggregated per record by max or mean (windows starting in padding ignored).

The pipeline is stored in every model bundle (`to_dict`), so a served or re-evaluated model sees exactly
what it was trained on; the model's input channels are `n_channels`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ecgtl.config import check_options
from ecgtl.data.dataset import LeadScaler, batch_bounds, sliding_windows, valid_lengths, window_starts
from ecgtl.data.signal import resample, standardise_records
from ecgtl.errors import EcgtlError
from ecgtl.inputs import STANDARD_LEADS, Aggregation, Domain, InputContract, Scaling, parse_leads

# Windows per forward pass in inference: 32 ten-second records (224 windows) still go in one pass.
MAX_WINDOWS_PER_PASS = 256


def to_domain(windows: np.ndarray, domain: str) -> np.ndarray:
    """[n, channels, crop] time windows -> the model's input in `domain` (float32)."""
    if domain == "time":
        return windows.astype(np.float32, copy=False)
    spectrum = np.fft.rfft(windows, axis=-1)
    part = {"fft_abs": np.abs, "fft_real": np.real, "fft_imag": np.imag}[domain](spectrum)
    return part.astype(np.float32)


@dataclass(frozen=True)
class InputPipeline:
    fs: float
    leads: tuple[str, ...] = STANDARD_LEADS
    domain: Domain = "time"
    crop_s: float = 2.5
    stride_s: float = 1.25
    aggregation: Aggregation = "max"
    scaler: LeadScaler | None = None
    scaling: Scaling = "dataset"

    def __post_init__(self) -> None:
        check_options(self)  # a bundle's pipeline (from JSON) meets the same declared choices as a config
        if not self.fs > 0 or self.crop < 8 or self.stride < 1:
            raise EcgtlError(f"fs {self.fs:g} Hz with crop {self.crop_s:g} s and stride {self.stride_s:g} s "
                             "gives windows too short to classify")
        object.__setattr__(self, "leads", parse_leads(self.leads))

    def at_model_rate(self, signals: np.ndarray, fs: float) -> np.ndarray:
        """Records sampled at `fs` as float32 at the model's rate (polyphase resampling; identity when equal).

        `signals` [..., samples]; the one way serving, predict and evaluation bring records to the model."""
        signals = np.asarray(signals, dtype=np.float32)
        return signals if fs == self.fs else resample(signals, fs, self.fs)

    @property
    def crop(self) -> int:
        return int(round(self.crop_s * self.fs))

    @property
    def stride(self) -> int:
        return int(round(self.stride_s * self.fs))

    @property
    def n_channels(self) -> int:
        return len(self.leads)

    @property
    def input_length(self) -> int:
        """Samples (time) or frequency bins (FFT domains) per channel of one window."""
        return self.crop if self.domain == "time" else self.crop // 2 + 1

    @property
    def contract(self) -> InputContract:
        return InputContract(self.fs, self.leads, self.domain, self.scaling)

    def records(self, signals: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Whole records [n, 12, samples] as the pipeline takes them: standardised per record and lead under
        `scaling=record` (over their real samples), else as they are."""
        return standardise_records(signals, lengths) if self.scaling == "record" else signals

    @property
    def lead_index(self) -> np.ndarray:
        return np.array([STANDARD_LEADS.index(lead) for lead in self.leads])

    def inputs(self, windows: np.ndarray) -> np.ndarray:
        """[n, 12, crop] windows in mV -> the model's input [n, n_channels, input_length], standardised."""
        if self.scaler is None:
            raise EcgtlError("the input pipeline has no fitted scaler yet (fit_scaler on the training split)")
        selected = to_domain(np.asarray(windows)[:, self.lead_index], self.domain)
        return self.scaler.transform(selected).astype(np.float32, copy=False)

    # ------------------------------------------------------------------------------------------- fitting
    def fit_scaler(self, signals: np.ndarray, lengths: np.ndarray) -> InputPipeline:
        """A copy with the per-channel scaler fitted on training records [n, 12, samples] (real samples only).

        Time domain: over every real sample; FFT domains: over the sliding windows' spectra.
        """
        if self.domain == "time":
            scaler = LeadScaler.fit(_Selected(signals, self.lead_index, self, lengths), lengths)
        else:
            blocks = []
            for start in range(0, len(signals), 256):
                block = self.records(np.asarray(signals[start:start + 256], dtype=np.float32),
                                     lengths[start:start + 256])[:, self.lead_index]
                windows, per_record = sliding_windows(block, self.crop, self.stride)
                usable = usable_windows(window_starts(block.shape[-1], self.crop, self.stride), self.crop,
                                         lengths[start:start + 256])
                blocks.append(to_domain(windows[usable.ravel()], self.domain))
            scaler = LeadScaler.fit(np.concatenate(blocks))
        return replace(self, scaler=scaler)

    # ------------------------------------------------------------------------------------------- batches
    def train_batches(self, split, rows: np.ndarray, batch_size: int, seed: int, epoch: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches of random crops inside each record's real samples, for one epoch.

        Randomness comes from `default_rng([seed, epoch])`: an epoch's batches are the same whether or not the
        run was resumed.
        """
        for views, labels in self.train_views(split, rows, batch_size, seed, epoch, n_views=1):
            yield views[0], labels

    def train_views(self, split, rows: np.ndarray, batch_size: int, seed: int, epoch: int, n_views: int = 2,
                    min_batch: int = 1) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """Like `train_batches`, with `n_views` independent random crops of every record in a batch (the views
        a contrastive objective compares); one view draws exactly what `train_batches` draws. Under torchrun,
        this process's part of each batch (`crop_plan`)."""
        lengths = valid_lengths(split)
        for batch_rows, offsets in crop_plan(rows, lengths, self.crop, batch_size, seed, epoch, n_views, min_batch):
            signals = self.records(np.asarray(split.signals[batch_rows]), lengths[batch_rows])
            views = []
            for view_offsets in offsets:
                positions = np.clip(view_offsets[:, None] + np.arange(self.crop)[None, :], 0, signals.shape[-1] - 1)
                windows = np.take_along_axis(signals, positions[:, None, :].repeat(signals.shape[1], axis=1), axis=-1)
                views.append(torch.from_numpy(self.inputs(windows)))
            yield views, torch.from_numpy(split.labels[batch_rows].astype(np.float32))

    # ------------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict_logits(self, model: nn.Module, signals: np.ndarray, lengths: np.ndarray | None = None, *,
                       batch_records: int = 32, device: torch.device | None = None) -> np.ndarray:
        """Logits [records, classes] of records [n, 12, samples] in mV at `fs`: sliding windows over each
        record's real samples (`lengths`, default all), aggregated by max or mean. 32 records (224 windows of
        10 s records) per forward pass: twice as fast as 128 on 2 CPU cores (benchmarks/bench_inference.py).
        At most `MAX_WINDOWS_PER_PASS` windows go through the model at once and windows are cut per pass, so
        one long record (an hour at 500 Hz) costs the memory of a normal batch, not gigabytes. Under torchrun
        each process scores every size-th block of `batch_records` records and every process gets all logits
        (`distributed.shard_blocks`): the same blocks as one process, so the same numbers."""
        from ecgtl.models.base import fold_batchnorm
        from ecgtl.training.distributed import gather_blocks, shard_blocks

        device = device or next(model.parameters()).device
        model.eval()
        model = fold_batchnorm(model)
        lengths = np.full(len(signals), np.asarray(signals).shape[-1]) if lengths is None else np.asarray(lengths)
        block_starts = list(range(0, len(signals), batch_records))
        outputs = {}
        for block in shard_blocks(len(block_starts)):
            start = block_starts[block]
            records = self.records(np.asarray(signals[start:start + batch_records], dtype=np.float32),
                                   lengths[start:start + batch_records])
            if records.shape[-1] < self.crop:
                records = np.pad(records, ((0, 0), (0, 0), (0, self.crop - records.shape[-1])))
            starts = window_starts(records.shape[-1], self.crop, self.stride)
            per_pass = max(1, MAX_WINDOWS_PER_PASS // len(records))  # windows of each record in one pass
            parts = []
            for first in range(0, len(starts), per_pass):
                chunk = starts[first:first + per_pass]
                windows = np.stack([records[..., s:s + self.crop] for s in chunk], axis=1)
                batch = torch.from_numpy(self.inputs(windows.reshape(-1, records.shape[1], self.crop))).to(device)
                with torch.autocast(device.type, enabled=device.type == "cuda"):
                    parts.append(model(batch).float().cpu().numpy().reshape(len(records), len(chunk), -1))
            logits = np.concatenate(parts, axis=1)
            usable = usable_windows(starts, self.crop, lengths[start:start + len(records)])
            if self.aggregation == "max":
                outputs[block] = np.where(usable[..., None], logits, -np.inf).max(axis=1)
            else:
                outputs[block] = (logits * usable[..., None]).sum(axis=1) / usable.sum(axis=1)[:, None]
        return np.concatenate(gather_blocks(outputs)).astype(np.float32)

    # ------------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        return {"fs": self.fs, "leads": list(self.leads), "domain": self.domain, "crop_s": self.crop_s,
                "stride_s": self.stride_s, "aggregation": self.aggregation,
                "scaler": self.scaler.to_dict() if self.scaler is not None else None, "scaling": self.scaling}

    @classmethod
    def from_dict(cls, data: dict) -> InputPipeline:
        scaler = LeadScaler.from_dict(data["scaler"]) if data.get("scaler") else None
        return cls(fs=float(data["fs"]), leads=tuple(data.get("leads", STANDARD_LEADS)),
                   domain=data.get("domain", "time"), crop_s=float(data["crop_s"]), stride_s=float(data["stride_s"]),
                   aggregation=data.get("aggregation", "max"), scaler=scaler, scaling=data.get("scaling", "dataset"))

    def describe(self) -> str:
        return (f"{self.contract.describe()}, {self.crop_s:g} s windows "
                f"(stride {self.stride_s:g} s, {self.aggregation})")


def crop_plan(rows: np.ndarray, lengths: np.ndarray, crop: int, batch_size: int, seed: int, epoch: int,
              n_views: int = 1, min_batch: int = 1) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """One epoch's batches as indices: (sorted rows [b], `n_views` crop starts [b] each), drawn from
    `default_rng([seed, epoch])` (shuffle, then per batch one uniform draw per view inside each record's real
    samples). Every input path (numpy gather from the memmap, a device-resident gather) cuts its crops from
    this plan, so they train on the same batches. Under torchrun every process draws the whole plan and yields
    its part of each batch (`distributed.batch_part`): together, the one-process epoch. A batch smaller than
    `min_batch` records per process is drawn and skipped (a contrastive loss needs two records)."""
    from ecgtl.training.distributed import batch_part, world

    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(rows)
    for start, end in batch_bounds(len(order), batch_size):
        batch_rows = np.sort(order[start:end])  # sorted reads are kinder to the memmap
        room = np.maximum(lengths[batch_rows] - crop, 0)
        offsets = [(rng.random(len(batch_rows)) * (room + 1)).astype(int) for _ in range(n_views)]
        if len(batch_rows) < min_batch * world().size:
            continue
        part = batch_part(len(batch_rows))
        yield batch_rows[part], [view[part] for view in offsets]


def usable_windows(starts: np.ndarray, crop: int, lengths: np.ndarray) -> np.ndarray:
    """[records, windows]: windows that start inside each record's real samples (the first always counts)."""
    return (starts[None, :] + crop <= np.maximum(np.asarray(lengths)[:, None], crop)) | (starts[None, :] == 0)


class _Selected:
    """A lazy lead selection of a (memory-mapped) [n, 12, samples] array as the pipeline takes its records,
    read chunk by chunk (slices only)."""

    def __init__(self, signals: np.ndarray, index: np.ndarray, pipeline: InputPipeline, lengths: np.ndarray) -> None:
        self.signals, self.index, self.pipeline, self.lengths = signals, index, pipeline, lengths
        self.shape = (signals.shape[0], len(index), signals.shape[-1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        return self.pipeline.records(np.asarray(self.signals[key]), self.lengths[key])[:, self.index]
