"""Data benchmark: synthetic generation, wfdb.rdsamp loop vs `ecgtl data prepare`, reopening the cache.

Generates N PTB-XL-layout records (100 Hz, 10 s, format 16) with the synthetic generator, then prints
records/s for the wfdb.rdsamp loop and for `prepare`, and the time to reopen the finished cache. With
--full it also generates PTB-XL size (21 837 records, 100 Hz, all files) and times prepare/reopen there.

    python benchmarks/bench_cache.py [--n 2000] [--full]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import wfdb

from ecgtl.data.cache import PrepareConfig, prepare
from ecgtl.data.synthetic import FULL_SIZE, SynthConfig, generate


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
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
