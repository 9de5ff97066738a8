"""Training-engine benchmark: engine vs a bare PyTorch loop, data-loader and inference throughput.

Uses the default synthetic PTB-XL cache (100 Hz, 10 s; generated on first use) and XResNet1d50, batch 128,
2.5 s crops, AdamW + one-cycle in both loops. Prints samples/s and the engine's overhead.

    python benchmarks/bench_train.py [--model xresnet1d50] [--records 1024]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from ecgtl.data.cache import SplitData, prepare
from ecgtl.data.dataset import valid_lengths
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit

CROP, BATCH = 250, 128


def bare_loop(model, signals: torch.Tensor, labels: torch.Tensor, epochs: int) -> float:
    """What a user would write by hand: tensors in memory, random crops, AdamW, one-cycle, BCE."""
    steps = math.ceil(len(signals) / BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * steps, pct_start=0.3)
    loss_function = torch.nn.BCEWithLogitsLoss()
    model.train()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(signals))
        for start in range(0, len(signals), BATCH):
            rows = order[start:start + BATCH]
            offsets = torch.randint(0, signals.shape[-1] - CROP + 1, (len(rows),))
            x = torch.stack([signals[r, :, o:o + CROP] for r, o in zip(rows.tolist(), offsets.tolist(), strict=True)])
            loss = loss_function(model(x), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xresnet1d50")
    parser.add_argument("--records", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    prepared = prepare(PrepareConfig(spec="synthetic:ptbxl?n=3000&seed=0"), progress=False)
    train, test = prepared.split("train"), prepared.split("test")
    rows = np.arange(min(args.records, len(train)))
    pipeline = InputPipeline(fs=100, crop_s=CROP / 100, stride_s=1.25).fit_scaler(train.signals, valid_lengths(train))
    scaler = pipeline.scaler
    n_classes = len(prepared.classes)
    print(f"cores / torch threads   {os.cpu_count()} / {torch.get_num_threads()}")
    print(f"model                   {args.model}, batch {BATCH}, crop {CROP} samples, {len(rows)} records x {args.epochs} epochs")

    started = time.perf_counter()
    n_batches = sum(1 for _ in pipeline.train_batches(train, rows, BATCH, seed=0, epoch=0))
    loader_rate = len(rows) / (time.perf_counter() - started)

    torch.manual_seed(0)
    signals = torch.from_numpy(scaler.transform(np.asarray(train.signals[rows])).astype(np.float32))
    labels = torch.from_numpy(train.labels[rows].astype(np.float32))
    bare_seconds = bare_loop(create_model(args.model, n_classes), signals, labels, args.epochs)
    model_rate = len(rows) * args.epochs / bare_seconds

    tiny_val = SplitData(train.signals[:2], train.labels[:2], train.index.iloc[:2].reset_index(drop=True))
    torch.manual_seed(0)
    config = TrainConfig(epochs=args.epochs, batch_size=BATCH, crop_s=2.5, stride_s=1.25)
    started = time.perf_counter()
    fit(create_model(args.model, n_classes), train, tiny_val, config, pipeline, train_rows=rows, progress=False)
    engine_seconds = time.perf_counter() - started
    engine_rate = len(rows) * args.epochs / engine_seconds

    model = create_model(args.model, n_classes).eval()
    records, lengths = test.signals[:256], valid_lengths(test)[:256]
    pipeline.predict_logits(model, records[:128], lengths[:128])  # warm-up: oneDNN plans
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        pipeline.predict_logits(model, records, lengths)
        timings.append(time.perf_counter() - started)
    inference_rate = len(records) / min(timings)

    print(f"bare PyTorch loop       {model_rate:8.0f} samples/s")
    print(f"ecgtl engine            {engine_rate:8.0f} samples/s  (overhead {100 * (engine_seconds / bare_seconds - 1):+.1f}%)")
    print(f"data loader alone       {loader_rate:8.0f} samples/s  ({loader_rate / model_rate:.0f}x the model, {n_batches} batches)")
    print(f"inference               {inference_rate:8.0f} ten-second 100 Hz records/s (7 windows each, max)")


if __name__ == "__main__":
    main()
