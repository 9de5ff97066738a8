"""Data benchmark: synthetic generation, wfdb.rdsamp loop vs `ecgtl data prepare`, reopening the cache.

Generates N PTB-XL-layout records (100 Hz, 10 s, format 16) with the synthetic generator, then prints
records/s for the wfdb.rdsamp loop and for `prepare`, and the time to reopen the finished cache. With
--full it also generates PTB-XL size (21 837 records, 100 Hz, all files) and times prepare/reopen there.

Whole commands, as a user runs them (goal: >= 10x): `ecgtl data prepare ptbxl:DIR --fs 100` vs a Python
process that loops over `wfdb.rdsamp`, both cold processes on 3 000 records (--whole-n). Also the import time
of `ecgtl --help`, `ecgtl data --help` and `ecgtl data inspect` (goal <= 0.3 s beyond Python; -X importtime).

    python benchmarks/bench_cache.py [--n 2000] [--whole-n 3000] [--full] [--samples ../shared/ecg-samples]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wfdb

from ecgtl.data.cache import prepare
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.synthetic import SynthConfig, generate
from ecgtl.data.synthetic_labels import FULL_SIZE


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


WFDB_LOOP = "import sys, pathlib, wfdb\n[wfdb.rdsamp(str(h.with_suffix(''))) for h in sorted(pathlib.Path(sys.argv[1]).rglob('*.hea'))]"
PYTHON_ITSELF = {"site", "encodings", "_frozen_importlib_external", "io", "zipimport", "_signal", "encodings.utf_8",
                 "_codecs", "codecs", "abc", "stat", "posixpath", "os", "_collections_abc", "_sitebuiltins", "time",
                 "marshal", "_io", "_weakref", "_thread", "_warnings", "posix", "_imp", "_frozen_importlib", "sys",
                 "builtins", "runpy", "pkgutil", "importlib.util", "importlib.machinery", "genericpath"}


def cold(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_seconds(arguments: list[str]) -> float:
    """Seconds a cold `python -m ecgtl.cli ARGS` spends importing modules beyond Python itself (-X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ecgtl.cli", *arguments], capture_output=True,
                          text=True, check=True)
    total = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and not parts[2].startswith("  ") and parts[1].strip().isdigit():
            total += int(parts[1]) if parts[2].strip() not in PYTHON_ITSELF else 0
    return total / 1e6


def whole_commands(tmp: Path, n: int, samples: Path | None) -> None:
    root = generate(SynthConfig(like="ptbxl", n=n, seed=1), tmp / f"whole-{n}", progress=False)
    env = {**os.environ, "ECGTL_CACHE_DIR": str(tmp / "whole-cache")}
    wfdb_seconds = cold([sys.executable, "-c", WFDB_LOOP, str(root)], env)
    prepare_seconds = cold([sys.executable, "-m", "ecgtl.cli", "data", "prepare", f"ptbxl:{root}", "--fs", "100"], env)
    print(f"whole commands, {n} records (cold processes):")
    print(f"  python wfdb.rdsamp loop  {wfdb_seconds:8.2f} s")
    print(f"  ecgtl data prepare       {prepare_seconds:8.2f} s  ({wfdb_seconds / prepare_seconds:.1f}x; goal >= 10x: "
          f"{'met' if wfdb_seconds / prepare_seconds >= 10 else 'NOT met'})")
    checks = [["--help"], ["data", "--help"]]
    if samples is not None and (samples / "cinc2021-smoke").exists():
        checks.append(["data", "inspect", str(samples / "cinc2021-smoke")])
    for arguments in checks:
        seconds = min(import_seconds(arguments) for _ in range(3))
        print(f"  imports of ecgtl {' '.join(arguments[:2]):<14} {seconds:6.3f} s beyond Python  (goal <= 0.3 s: "
              f"{'met' if seconds <= 0.3 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--whole-n", type=int, default=3000)
    parser.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "ecg-samples")
    parser.add_argument("--full", action="store_true", help="also generate and prepare PTB-XL size")
    args = parser.parse_args()
    print(f"cores                      {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ECGTL_CACHE_DIR"] = str(tmp / "cache")
        root, seconds = timed(generate, SynthConfig(like="ptbxl", n=args.n, seed=0), tmp / "ptbxl", progress=False)
        print(f"synthesise {args.n} records   {seconds:8.1f} s  ({args.n / seconds:.0f} records/s)")
        headers = sorted(root.rglob("*.hea"))
        _, seconds = timed(lambda: [wfdb.rdsamp(str(h.with_suffix(""))) for h in headers])
        wfdb_rate = len(headers) / seconds
        prepared, seconds = timed(prepare, PrepareConfig(spec=f"ptbxl:{root}"), progress=False)
        prepare_rate = args.n / seconds
        _, reopen = timed(lambda: prepare(PrepareConfig(spec=f"ptbxl:{root}"), progress=False).split("train").signals[0].sum())
        print(f"wfdb.rdsamp loop           {wfdb_rate:8.0f} records/s")
        print(f"ecgtl data prepare         {prepare_rate:8.0f} records/s  ({prepare_rate / wfdb_rate:.1f}x)")
        print(f"reopen cache               {reopen * 1000:8.1f} ms  ({sum(prepared.manifest['counts'].values())} records)")
        whole_commands(tmp, args.whole_n, args.samples)
        if args.full:
            n = FULL_SIZE["ptbxl"]
            big, seconds = timed(generate, SynthConfig(like="ptbxl", n=n, seed=0), tmp / "full", progress=False)
            print(f"synthesise {n} records  {seconds:8.1f} s  (PTB-XL size, 100 Hz, all files)")
            _, seconds = timed(prepare, PrepareConfig(spec=f"ptbxl:{big}"), progress=False)
            print(f"prepare {n} records     {seconds:8.1f} s  ({n / seconds:.0f} records/s)")
            _, reopen = timed(lambda: prepare(PrepareConfig(spec=f"ptbxl:{big}"), progress=False).split("train").signals[0].sum())
            print(f"reopen {n} records      {reopen * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
