"""Ablation wall time: `exp1-target-fraction --quick` (5 target fractions x 2 inits x 3 seeds = 30 cells plus one
shared pretraining, xresnet1d18) with --jobs 1 and --jobs 2 on the same grid, each in a fresh MLflow store
(so nothing is reused) with the synthetic data already generated and prepared (so both time the cells).

    python benchmarks/bench_ablation.py [--jobs 1,2] [--out DIR]

Prints each figure beside its goal. Goal: the quick preset within 15 minutes on 2 cores; --jobs 2 faster
than --jobs 1. The --jobs 1 run's figures (ablation/*.png, *.html) are copied to --out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 15 * 60


def run(jobs: int, cache: Path, out: Path | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ECGTL_CACHE_DIR": str(cache), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
               "MLFLOW_EXPERIMENT_NAME": "bench-ablation", "PYTHONPATH": str(ROOT)}
        env.pop("MLFLOW_RUN_ID", None)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ecgtl.cli", "ablation", "--preset", "exp1-target-fraction",
                               "--quick", "--jobs", str(jobs)], env=env, cwd=tmp, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
        if out is not None:
            import mlflow

            client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
            experiment = client.get_experiment_by_name("bench-ablation").experiment_id
            parent = client.search_runs([experiment], "tags.`ecgtl.stage` = 'ablation'")[0]
            local = client.download_artifacts(parent.info.run_id, "ablation", tmp)
            out.mkdir(parents=True, exist_ok=True)
            for path in Path(local).iterdir():
                shutil.copy(path, out / path.name)
        summary = [line for line in done.stderr.splitlines() if "cells finished" in line or "tasks finished" in line]
        print(f"  jobs {jobs}: {seconds:7.1f} s  ({'; '.join(summary[-2:])})")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--out", type=Path, default=None, help="where to copy the jobs-1 run's figures and tables")
    args = parser.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    cache = Path(tempfile.mkdtemp(prefix="ecgtl-bench-ablation-"))
    try:
        sys.path.insert(0, str(ROOT))
        os.environ["ECGTL_CACHE_DIR"] = str(cache)
        from ecgtl.stages.ablation import expand, prepare_caches
        from ecgtl.stages.configs import AblationConfig

        started = time.perf_counter()
        prepare_caches(expand(AblationConfig(preset="exp1-target-fraction", quick=True)))
        print(f"cores {os.cpu_count()}; data generated and prepared in {time.perf_counter() - started:.1f} s (not timed below)")
        print("exp1-target-fraction --quick: 30 cells + 1 pretraining")
        seconds = {jobs: run(jobs, cache, args.out if jobs == jobs_list[0] else None) for jobs in jobs_list}
        first = seconds[jobs_list[0]]
        print(f"{'quick preset, --jobs ' + str(jobs_list[0]):<28} {first:7.1f} s   goal <= {GOAL_S} s: "
              f"{'met' if first <= GOAL_S else 'NOT met'}")
        for jobs in jobs_list[1:]:
            print(f"{'--jobs ' + str(jobs) + ' vs --jobs ' + str(jobs_list[0]):<28} {first / seconds[jobs]:7.2f}x  "
                  f"goal > 1: {'met' if seconds[jobs] < first else 'NOT met'}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
