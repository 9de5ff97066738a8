"""Bootstrap timing: percentile CIs of per-class and macro AUC, and the paired difference of two models.

    python benchmarks/bench_evaluation.py [--records 2000] [--classes 18] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ecgtl.evaluation.metrics import bootstrap_auc, paired_bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=18)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.random((args.records, args.classes)) < np.geomspace(0.3, 0.01, args.classes)).astype(int)
    scores_a = y * 1.2 + rng.standard_normal(y.shape)
    scores_b = y * 1.0 + rng.standard_normal(y.shape)
    started = time.perf_counter()
    result = bootstrap_auc(y, scores_a, n_resamples=args.resamples, seed=0)
    single = time.perf_counter() - started
    started = time.perf_counter()
    paired = paired_bootstrap(y, scores_a, scores_b, n_resamples=args.resamples, seed=0)
    pair = time.perf_counter() - started
    print(f"cores              {os.cpu_count()}")
    print(f"problem            {args.records} records x {args.classes} classes, {args.resamples} resamples")
    print(f"bootstrap_auc      {single:6.2f} s  (macro AUC {result.macro.estimate:.3f} "
          f"[{result.macro.low:.3f}, {result.macro.high:.3f}])")
    print(f"paired_bootstrap   {pair:6.2f} s  (difference {paired.mean:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}], "
          f"p={paired.p_value:.4f})")


if __name__ == "__main__":
    main()
