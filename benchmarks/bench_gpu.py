"""Speed on the device the engine trains on (a GPU when there is one, else the CPU at small size).

Prints, each beside its goal:
- loader records/s of each input path (numpy on the training thread, a background-thread prefetch, the split
  resident on the device with crops cut by one gather) against the engine's training rate: the loader should
  never be what the device waits for;
- training records/s: the engine (`fit`, one tiny validation split) vs a bare PyTorch loop on the same device
  (tensors already there, one gather per batch, the same autocast);
- validation records/s (`pipeline.predict_logits`, sliding windows, max aggregation);
- the `main` study timed by phase (generation, prepare, pretrain, finetune, scratch, evaluation, logging):
  at full size with `--full` (21 837 PTB-XL + 10 344 Georgia synthetic records, XResNet1d101, 50 + 50 epochs;
  goal <= 10 min on one H100-class GPU), else at `--main-size` (quick) so it runs on 2 CPU cores.

The throughput figures are printed for each model of `--models` (by default the CNN and the state-space encoder).

    python benchmarks/bench_gpu.py [--records 2048] [--models xresnet1d50,s4d] [--full] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_MAIN = {"source": "synthetic:ptbxl?n=21837&seed=0", "target": "synthetic:g12ec?n=10344&seed=0",
             "model": "xresnet1d101", "pretrain_epochs": 50, "finetune_epochs": 50, "batch_size": 128}
SMALL_MAIN = {"source": "synthetic:ptbxl?n=800&seed=0", "target": "synthetic:g12ec?n=500&seed=0",
              "model": "xresnet1d18", "pretrain_epochs": 2, "finetune_epochs": 2, "batch_size": 64}
MAIN_GOAL_S = 600


def _synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rates(pipeline, train, rows, device, batch: int) -> dict[str, float]:
    """Records/s of one epoch of batches through each input path, delivered on `device`."""
    from ecgtl.training.batches import TrainInputs

    paths = {"numpy, training thread": {"device_cache": "off", "prefetch": 0},
             "numpy, prefetch thread": {"device_cache": "off", "prefetch": 2},
             "resident on the device": {"device_cache": "on"}}
    rates = {}
    for name, options in paths.items():
        inputs = TrainInputs(pipeline, train, rows, device, **options)
        started = time.perf_counter()
        for views, _ in inputs.epoch(batch, 0, 0):
            views[0].sum()  # touch the batch as the model would
        _synchronize(device)
        rates[name] = len(rows) / (time.perf_counter() - started)
    return rates


def bare_loop(model, resident, rows, device, precision: str, batch: int, epochs: int) -> float:
    """What a user writes by hand on the device: records already there, random crops by one gather, AdamW,
    one-cycle, BCE, the engine's autocast. Returns seconds."""
    from ecgtl.pipeline import crop_plan
    from ecgtl.training.accelerator import autocast, grad_scaler

    steps = -(-len(rows) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * steps + 1,
                                                    pct_start=0.3)
    scaler = grad_scaler(device, precision)
    loss_function = torch.nn.BCEWithLogitsLoss()
    model.to(device).train()
    started = time.perf_counter()
    for epoch in range(epochs):
        for batch_rows, offsets in crop_plan(rows, resident.lengths, resident.pipeline.crop, batch, 0, epoch):
            views, labels = resident.batch(batch_rows, offsets)
            with autocast(device, precision):
                loss = loss_function(model(views[0]).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
    _synchronize(device)
    return time.perf_counter() - started


def main_by_phase(sizing: dict, workdir: Path, device: str) -> tuple[float, str]:
    """Run `main` at `sizing` in a fresh store and cache; its wall seconds and the per-phase table."""
    from ecgtl import timing
    from ecgtl.stages.configs import DataConfig, FinetuneConfig, MainConfig, PretrainConfig
    from ecgtl.stages.main import main
    from ecgtl.training.config import TrainConfig

    def train(epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=sizing["batch_size"], device=device, explain_examples=0)

    config = MainConfig(
        pretrain=PretrainConfig(data=DataConfig(spec=sizing["source"]), model=sizing["model"],
                                train=train(sizing["pretrain_epochs"]), n_bootstrap=200),
        finetune=FinetuneConfig(data=DataConfig(spec=sizing["target"]), model=sizing["model"],
                                train=train(sizing["finetune_epochs"]), n_bootstrap=200),
        n_bootstrap=200)
    started = time.perf_counter()
    main(config)
    return time.perf_counter() - started, timing.table()


def throughput(model_name: str, args, pipeline, train, val, rows, classes: int, device, precision: str) -> None:
    """The loader, engine and bare-loop training rates and the validation rate of one architecture."""
    from ecgtl.data.cache import SplitData
    from ecgtl.data.dataset import valid_lengths
    from ecgtl.models import create_model
    from ecgtl.training.batches import ResidentSplit
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.loop import fit

    print(f"\n{model_name}, batch {args.batch}, 2.5 s crops at {pipeline.fs:g} Hz, {len(rows)} records x "
          f"{args.epochs} epochs (synthetic PTB-XL)", flush=True)

    torch.manual_seed(0)
    resident = ResidentSplit(pipeline, train, rows, device)
    warm = rows[:2 * args.batch]  # first calls pay for kernel plans (oneDNN, cuDNN autotuning): not measured
    bare_loop(create_model(model_name, classes), resident, warm, device, precision, args.batch, 1)
    bare_rate = len(rows) * args.epochs / bare_loop(create_model(model_name, classes), resident, rows, device,
                                                    precision, args.batch, args.epochs)
    del resident
    tiny_val = SplitData(val.signals[:2], val.labels[:2], val.index.iloc[:2].reset_index(drop=True))
    engine = {}
    for label, cache in (("engine, device_cache on", "on"), ("engine, device_cache off (prefetch)", "off")):
        torch.manual_seed(0)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch, device=str(device), device_cache=cache)
        started = time.perf_counter()
        fit(create_model(model_name, classes), train, tiny_val, config, pipeline, train_rows=rows, progress=False)
        _synchronize(device)
        engine[label] = len(rows) * args.epochs / (time.perf_counter() - started)
    best_engine = max(engine.values())

    print(f"\n{'figure':<42} {'records/s':>10}  goal")
    print(f"{'bare PyTorch loop on ' + str(device):<42} {bare_rate:10.0f}  (reference)")
    for label, rate in engine.items():
        print(f"{label:<42} {rate:10.0f}  >= 95% of the bare loop: {rate / bare_rate:.0%} "
              f"{'met' if rate >= 0.95 * bare_rate else 'NOT met'}")
    for label, rate in loader_rates(pipeline, train, rows, device, args.batch).items():
        print(f"{'loader: ' + label:<42} {rate:10.0f}  >= the engine's training rate: {rate / best_engine:.1f}x "
              f"{'met' if rate >= best_engine else 'NOT met'}")
    model = create_model(model_name, classes).to(device).eval()
    lengths = valid_lengths(val)
    pipeline.predict_logits(model, val.signals[:64], lengths[:64], device=device)  # warm-up
    started = time.perf_counter()
    pipeline.predict_logits(model, val.signals, lengths, device=device)
    _synchronize(device)
    print(f"{'validation (sliding windows, max)':<42} {len(val) / (time.perf_counter() - started):10.0f}  "
          f"(ten-second records, {len(val)} of them)", flush=True)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2048, help="training records of the throughput figures")
    parser.add_argument("--models", default="xresnet1d50,s4d", help="comma-separated: a throughput table each")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--full", action="store_true", help="time main at full size (a GPU job)")
    parser.add_argument("--skip-main", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ecgtl-bench-gpu-"))
    os.environ.update({"ECGTL_CACHE_DIR": str(workdir / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
                       "MLFLOW_EXPERIMENT_NAME": "bench-gpu"})
    os.environ.pop("MLFLOW_RUN_ID", None)
    import numpy as np

    from ecgtl.data.cache import prepare
    from ecgtl.data.dataset import valid_lengths
    from ecgtl.data.prepare_config import PrepareConfig
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.accelerator import resolve_device, resolve_precision

    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"device {device} ({name}); precision {precision}; torch {torch.__version__}", flush=True)
    n = max(3000, int(args.records / 0.8) + 10)
    prepared = prepare(PrepareConfig(spec=f"synthetic:ptbxl?n={n}&seed=0"), progress=False)
    train, val = prepared.split("train"), prepared.split("val")
    rows = np.arange(min(args.records, len(train)))
    pipeline = InputPipeline(fs=prepared.fs).fit_scaler(train.signals, valid_lengths(train))
    classes = len(prepared.classes)
    for model_name in args.models.split(","):
        throughput(model_name, args, pipeline, train, val, rows, classes, device, precision)

    if not args.skip_main:
        sizing = FULL_MAIN if args.full else SMALL_MAIN
        seconds, table = main_by_phase(sizing, workdir, str(device))
        print(f"\nmain: {sizing['model']}, {sizing['source']} -> {sizing['target']}, "
              f"{sizing['pretrain_epochs']} + {sizing['finetune_epochs']} epochs: {seconds:.0f} s")
        goal = (f"goal <= {MAIN_GOAL_S} s on one H100-class GPU: {'met' if seconds <= MAIN_GOAL_S else 'NOT met'}"
                if args.full else "the goal (<= 10 min) is for --full on one H100-class GPU; this is the small size")
        print(goal)
        print(table)


if __name__ == "__main__":
    main_cli()
