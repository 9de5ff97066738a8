"""Data parallelism on this machine: one training epoch of a model on synthetic PTB-XL, as
- 1 process x 1 thread (the unit), 1 process x 2 threads, and 2 processes x 1 thread (torchrun, gloo), with
  SyncBatchNorm (the default) and without;
records per second of each (an epoch: training and sharded validation), the scaling efficiency of 2 processes
against twice the unit (goal: at least 85 % of linear at XResNet1d50 size), and the gradient all-reduce's share
of a step (the model's parameters summed across the processes, timed alone).

    python benchmarks/bench_distributed.py [--records 3000] [--model xresnet1d50] [--epochs 1]

On a machine with several GPUs, `--nproc N --device cuda` gives the same table for N GPUs (not measured here:
this project's machines have no GPU, and the lent one has a single H200). Every figure: synthetic data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL = 0.85


def worker(args: argparse.Namespace) -> None:
    """One configuration: prepare (rank 0 first), train `epochs` epochs, print seconds per epoch (rank 0)."""
    import torch

    from ecgtl.models import count_parameters, create_model
    from ecgtl.stages.common import fit_pipeline, load_data
    from ecgtl.stages.configs import DataConfig
    from ecgtl.training import distributed
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.loop import fit

    torch.set_num_threads(args.threads)
    data = DataConfig(spec=f"synthetic:ptbxl?n={args.records}&seed=0")
    config = TrainConfig(epochs=args.epochs, batch_size=128, device=args.device, explain_examples=0,
                         sync_bn=args.sync_bn == "true")
    prepared, rows = load_data(data, 0)
    pipeline = fit_pipeline(data, config, prepared, rows)
    torch.manual_seed(0)
    model = create_model(args.model, len(prepared.classes))
    tiny_val = prepared.split("val")  # scored too (sharded under torchrun), as every epoch does
    result = fit(model, prepared.split("train"), tiny_val, config, pipeline, train_rows=rows, progress=False)
    seconds = sum(h.seconds for h in result.history) / len(result.history)
    reduce_ms = float("nan")
    if distributed.launched():  # the gradient all-reduce alone: one tensor of the model's size
        flat = torch.zeros(count_parameters(model), device=next(model.parameters()).device)
        torch.distributed.barrier()
        started = time.perf_counter()
        for _ in range(10):
            torch.distributed.all_reduce(flat)
        reduce_ms = (time.perf_counter() - started) / 10 * 1000
    if distributed.world().is_main:
        steps = -(-len(rows) // config.batch_size)
        print(json.dumps({"seconds": seconds, "records": len(rows), "steps": steps, "reduce_ms": reduce_ms}))


def run(command: list[str], env: dict) -> dict:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--model", default="xresnet1d50")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sync-bn", default="true", choices=("true", "false"))
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    common = [str(Path(__file__).resolve()), "--worker", "--records", str(args.records), "--model", args.model,
              "--epochs", str(args.epochs), "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ECGTL_CACHE_DIR": os.environ.get("ECGTL_CACHE_DIR", str(Path(tmp) / "cache")),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        env.pop("WORLD_SIZE", None)
        unit = run([sys.executable, *common, "--threads", "1"], env)
        threads = run([sys.executable, *common, "--threads", str(args.nproc)], env)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
        processes = run([*torchrun, *common, "--threads", "1"], env)
        unsynced = run([*torchrun, *common, "--threads", "1", "--sync-bn", "false"], env)
    rate = {name: r["records"] / r["seconds"] for name, r in (("unit", unit), ("threads", threads),
                                                              ("processes", processes), ("unsynced", unsynced))}
    efficiency = {name: rate[name] / (args.nproc * rate["unit"]) for name in ("processes", "unsynced")}
    step_ms = processes["seconds"] / processes["steps"] * 1000
    print(f"one epoch of {args.model}, {unit['records']} synthetic PTB-XL training records, batch 128, "
          f"{args.device} (synthetic data)")
    print("| configuration | s / epoch | records / s |\n|---|---|---|")
    print(f"| 1 process x 1 thread | {unit['seconds']:.1f} | {rate['unit']:.1f} |")
    print(f"| 1 process x {args.nproc} threads | {threads['seconds']:.1f} | {rate['threads']:.1f} |")
    print(f"| {args.nproc} processes x 1 thread (DDP, gloo, SyncBatchNorm) | {processes['seconds']:.1f} | "
          f"{rate['processes']:.1f} |")
    print(f"| {args.nproc} processes x 1 thread (DDP, gloo, train.sync_bn false) | {unsynced['seconds']:.1f} | "
          f"{rate['unsynced']:.1f} |")
    for name, label in (("processes", "with SyncBatchNorm"), ("unsynced", "without")):
        print(f"scaling efficiency of {args.nproc} processes {label}: {efficiency[name]:.0%} of linear (goal >= "
              f"{GOAL:.0%}: {'met' if efficiency[name] >= GOAL else 'NOT met'}); against {args.nproc} threads: "
              f"{rate[name] / rate['threads']:.2f}x")
    print(f"gradient all-reduce alone: {processes['reduce_ms']:.1f} ms per step of {step_ms:.0f} ms "
          f"({processes['reduce_ms'] / step_ms:.1%})")


if __name__ == "__main__":
    main()
