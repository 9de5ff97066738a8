"""How cost grows with records (synthetic PTB-XL layout, 100 Hz, 10 s): prepare time, cache size, peak memory
and one training epoch's time at 1 000, 3 000, 10 000 and 21 837 records, with the growth factor per step
beside the records' own factor (goal: linear, so the two factors agree). At the largest size it also times
`ecgtl data prepare` against a `wfdb.rdsamp` loop as whole commands, both cold processes (goal >= 10x).

Every figure except generation comes from its own cold process, whose peak resident memory `os.wait4` reports
(the cache is memory-mapped, so pages of it that a process touches count in its resident memory).

    python benchmarks/bench_scaling.py [--sizes 1000,3000,10000,21837] [--model xresnet1d50]
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

from bench_cache import WFDB_LOOP

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPOCH = """
import json, sys, time, torch
from ecgtl.data.cache import prepare
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.dataset import valid_lengths
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit
prepared = prepare(PrepareConfig(spec="ptbxl:" + sys.argv[1]), progress=False)
train, val = prepared.split("train"), prepared.split("val")
started = time.perf_counter()
pipeline = InputPipeline(fs=prepared.fs).fit_scaler(train.signals, valid_lengths(train))
scaler_s = time.perf_counter() - started
torch.manual_seed(0)
result = fit(create_model(sys.argv[2], len(prepared.classes)), train, val, TrainConfig(epochs=1, batch_size=128),
             pipeline, progress=False)
print(json.dumps({"train_records": len(train), "scaler_s": scaler_s, "epoch_s": result.history[0].seconds}))
"""


def measured(command: list[str], env: dict) -> tuple[float, float, str]:
    """Seconds, peak resident MiB and stdout of a cold process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed")
    return seconds, usage.ru_maxrss / 1024, output


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


COLUMNS = [("records", "n", "{:.0f}"), ("prepare s", "prepare", "{:.1f}"), ("cache MiB", "cache", "{:.0f}"),
           ("prepare peak MiB", "prepare_mib", "{:.0f}"), ("scaler fit s", "scaler", "{:.1f}"),
           ("epoch s", "epoch", "{:.1f}"), ("epoch peak MiB", "epoch_mib", "{:.0f}")]


def cell(rows: list[dict], index: int, key: str, number: str) -> str:
    """A figure and its growth factor over the row before (the records' own factor in the first column)."""
    text = number.format(rows[index][key])
    return text if index == 0 else f"{text} (x{rows[index][key] / rows[index - 1][key]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000,21837")
    parser.add_argument("--model", default="xresnet1d50")
    args = parser.parse_args()
    from ecgtl.data.synthetic import SynthConfig, generate

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"cores {os.cpu_count()}; synthetic PTB-XL layout, 100 Hz, 10 s; one epoch of {args.model}, batch 128, "
          "2.5 s crops, validation included", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in sizes:
            started = time.perf_counter()
            root = generate(SynthConfig(like="ptbxl", n=n, seed=0), tmp / f"ptbxl-{n}", progress=False)
            generation = time.perf_counter() - started
            env = {**os.environ, "ECGTL_CACHE_DIR": str(tmp / f"cache-{n}")}
            prepare_s, prepare_mib, _ = measured([sys.executable, "-m", "ecgtl.cli", "data", "prepare", f"ptbxl:{root}",
                                                  "--fs", "100"], env)
            epoch_wall, epoch_mib, output = measured([sys.executable, "-c", EPOCH, str(root), args.model], env)
            epoch = json.loads(output.strip().splitlines()[-1])
            rows.append({"n": n, "generation": generation, "prepare": prepare_s, "cache": folder_mib(tmp / f"cache-{n}"),
                         "prepare_mib": prepare_mib, "epoch": epoch["epoch_s"], "epoch_mib": epoch_mib,
                         "scaler": epoch["scaler_s"], "train": epoch["train_records"]})
            print(f"  {n} records: generated in {generation:.0f} s, prepared in {prepare_s:.1f} s, "
                  f"epoch {epoch['epoch_s']:.0f} s", flush=True)
            if n == sizes[-1]:
                wfdb_s, wfdb_mib, _ = measured([sys.executable, "-c", WFDB_LOOP, str(root)], env)
                whole = (wfdb_s, wfdb_mib, prepare_s)
    print()
    print("  ".join(f"{title:>18}" for title, _, _ in COLUMNS))
    for i in range(len(rows)):
        print("  ".join(f"{cell(rows, i, key, number):>18}" for _, key, number in COLUMNS))
    print("goal: linear growth (each factor close to the records' factor in the first column)")
    wfdb_s, wfdb_mib, prepare_s = whole
    print(f"\nwhole commands at {sizes[-1]} records (cold processes): wfdb.rdsamp loop {wfdb_s:.1f} s "
          f"({wfdb_mib:.0f} MiB peak), ecgtl data prepare {prepare_s:.1f} s: {wfdb_s / prepare_s:.1f}x "
          f"(goal >= 10x: {'met' if wfdb_s / prepare_s >= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
