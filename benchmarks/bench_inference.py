"""Inference at the model's limit: the whole pipeline vs the bare batched forward pass, and CPU variants.

XResNet1d50 (eval, Conv+BN folded), 256 synthetic-Georgia test-like records of 10 s at 100 Hz, 7 windows of
2.5 s each, max aggregation. Prints records/s for:
- bare: the model on the pre-made, pre-scaled windows of all records (batches of 32 records x 7 windows, as the
  pipeline uses);
- pipeline: `InputPipeline.predict_logits` on raw records (windowing, scaling, forward, aggregation);
- variants of the bare pass: torch.no_grad instead of inference_mode, 1 thread, smaller/larger batches,
  torch.compile (with --compile; compiling takes a minute on 2 cores).
Goal: the pipeline adds <= 10 % to the bare forward pass. Exactness: the largest absolute difference of
probabilities between each variant and the pipeline.

    python benchmarks/bench_inference.py [--records 256] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ecgtl.data.dataset import LeadScaler, sliding_windows  # noqa: E402
from ecgtl.models import create_model  # noqa: E402
from ecgtl.models.base import fold_batchnorm  # noqa: E402
from ecgtl.pipeline import InputPipeline  # noqa: E402


def best_of(function, repeats: int = 3) -> float:
    function()  # warm-up: oneDNN picks its kernels
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    signals = (rng.standard_normal((args.records, 12, 1000)) * 0.3).astype(np.float32)
    pipeline = InputPipeline(fs=100, scaler=LeadScaler(np.zeros(12, np.float32), np.full(12, 0.3, np.float32)))
    torch.manual_seed(0)
    model = create_model("xresnet1d50", 18).eval()
    folded = fold_batchnorm(model)
    windows, per_record = sliding_windows(pipeline.scaler.transform(signals).astype(np.float32), pipeline.crop,
                                          pipeline.stride)
    batches = [torch.from_numpy(windows[i:i + 32 * per_record]) for i in range(0, len(windows), 32 * per_record)]

    def bare(net=folded, chunks=batches, grad_mode=torch.inference_mode):
        with grad_mode():
            return torch.cat([net(chunk) for chunk in chunks]).reshape(args.records, per_record, -1).amax(dim=1)

    reference = pipeline.predict_logits(model, signals)
    results = {}
    results["bare forward (inference_mode, batch 32)"] = (best_of(bare), bare())
    results["pipeline predict_logits"] = (best_of(lambda: pipeline.predict_logits(model, signals)), reference)
    results["bare, torch.no_grad"] = (best_of(lambda: bare(grad_mode=torch.no_grad)), bare(grad_mode=torch.no_grad))
    for size in (8, 128, 256):
        chunks = [torch.from_numpy(windows[i:i + size * per_record]) for i in range(0, len(windows), size * per_record)]
        results[f"bare, batch {size}"] = (best_of(lambda chunks=chunks: bare(chunks=chunks)), bare(chunks=chunks))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results["bare, 1 thread"] = (best_of(bare), bare())
    torch.set_num_threads(threads)
    if args.compile:
        compiled = torch.compile(folded)
        results["bare, torch.compile"] = (best_of(lambda: bare(net=compiled)), bare(net=compiled))
    from scipy.special import expit

    print(f"cores {os.cpu_count()}, torch threads {threads}; {args.records} records x {per_record} windows, XResNet1d50")
    base = results["bare forward (inference_mode, batch 32)"][0]
    for name, (seconds, logits) in results.items():
        difference = float(np.abs(expit(np.asarray(logits)) - expit(reference)).max())
        print(f"{name:<42} {args.records / seconds:8.0f} records/s   max |p - p_pipeline| {difference:.1e}")
    overhead = results["pipeline predict_logits"][0] / base - 1
    print(f"pipeline overhead over the bare forward pass: {overhead:+.1%} (goal <= 10%: "
          f"{'met' if overhead <= 0.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
