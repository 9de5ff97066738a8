"""Cache benchmark: wfdb.rdsamp loop vs `ecgtl data prepare`, and reopening the cache.

Writes N PTB-XL-shaped records (native layout, 100 Hz, 10 s, format 16) into a temp folder and prints
records/s for both readers, the speed-up, and the time to reopen a finished cache (also at PTB-XL size:
21 837 records, reopened from a cache built by `prepare`).

    python benchmarks/bench_cache.py [--n 2000] [--reopen-n 21837]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecgtl.data.cache import PrepareConfig, prepare
from ecgtl.data.records import write_format16

PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def write_ptbxl_like(root: Path, n: int, fs: int = 100) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"description": ["left ventricular hypertrophy"], "diagnostic": [1.0], "form": [None],
                  "rhythm": [None], "diagnostic_class": ["HYP"], "diagnostic_subclass": ["LVH"]},
                 index=["LVH"]).to_csv(root / "scp_statements.csv")
    rows = []
    for ecg_id in range(1, n + 1):
        name = f"records100/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_lr"
        signal = np.cumsum(rng.standard_normal((12, 10 * fs)), axis=1) * 0.01
        write_format16(root / Path(name).parent, Path(name).name, signal, fs, leads=PTBXL_LEADS)
        rows.append({"ecg_id": ecg_id, "patient_id": ecg_id, "age": 50, "sex": 0,
                     "scp_codes": "{'LVH': 100.0}" if ecg_id % 7 == 0 else "{'NORM': 100.0}",
                     "strat_fold": ecg_id % 10 + 1, "filename_lr": name, "filename_hr": name.replace("100", "500")})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reopen-n", type=int, default=21837, help="records for the reopen timing (0 to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ECGTL_CACHE_DIR"] = str(tmp / "cache")
        root = write_ptbxl_like(tmp / "ptbxl", args.n)
        headers = sorted(root.rglob("*.hea"))

        started = time.perf_counter()
        for header in headers:
            wfdb.rdsamp(str(header.with_suffix("")))
        wfdb_rate = len(headers) / (time.perf_counter() - started)

        started = time.perf_counter()
        prepared = prepare(PrepareConfig(spec=f"ptbxl:{root}"), progress=False)
        prepare_rate = args.n / (time.perf_counter() - started)

        started = time.perf_counter()
        prepare(PrepareConfig(spec=f"ptbxl:{root}"), progress=False).split("train").signals[0].sum()
        reopen = time.perf_counter() - started
        print(f"cores                 {os.cpu_count()}")
        print(f"records               {args.n} (100 Hz, 10 s, format 16)")
        print(f"wfdb.rdsamp loop      {wfdb_rate:8.0f} records/s")
        print(f"ecgtl data prepare    {prepare_rate:8.0f} records/s  ({prepare_rate / wfdb_rate:.1f}x)")
        print(f"reopen cache          {reopen * 1000:8.1f} ms  ({sum(prepared.manifest['counts'].values())} records)")

        if args.reopen_n:
            big = write_ptbxl_like(tmp / "ptbxl_full", args.reopen_n)
            started = time.perf_counter()
            prepare(PrepareConfig(spec=f"ptbxl:{big}"), progress=False)
            built = time.perf_counter() - started
            started = time.perf_counter()
            prepare(PrepareConfig(spec=f"ptbxl:{big}"), progress=False).split("train").signals[0].sum()
            reopen = time.perf_counter() - started
            print(f"prepare {args.reopen_n} records {built:8.1f} s  ({args.reopen_n / built:.0f} records/s)")
            print(f"reopen {args.reopen_n} records  {reopen * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
