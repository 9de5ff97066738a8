"""ONNX Runtime against the torch pipeline on CPU, same run, same model and records; and what system metrics cost.

1. Inference: XResNet1d50 (an untrained bundle: speed does not depend on the weights), 256 records of 10 s at
   100 Hz, sliding 2.5 s windows, temperature calibration. records/s of the torch `Predictor` (what the pyfunc
   calls) and of the exported model through the numpy/onnxruntime reference runner (`run_onnx.py`); and their
   largest difference of calibrated probabilities (goal: <= 1e-4).
2. System metrics: a small fine-tune (XResNet1d18, 300 synthetic Georgia records, 3 epochs) with and without
   `train.system_metrics` (MLflow's sampler, 10 s interval): seconds per epoch and the difference (goal: not
   measurable, < 2 %, else it stays off by default).

    python benchmarks/bench_export.py [--records 256] [--out benchmarks/out/export]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from _store import use_out_folder  # noqa: E402
from bench_inference import best_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _bundle_uri(folder: Path) -> str:
    import mlflow
    import torch

    from ecgtl import serving, tracking
    from ecgtl.evaluation.calibration import make_calibrator
    from ecgtl.inference import BundleInfo, save_bundle
    from ecgtl.models import create_model
    from ecgtl.pipeline import InputPipeline

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    signals = rng.normal(0, 0.3, (64, 12, 1000)).astype(np.float32)
    pipeline = InputPipeline(fs=100.0).fit_scaler(signals, np.full(64, 1000))
    model = create_model("xresnet1d50", 18, n_leads=12).eval()
    logits = rng.normal(0, 2, (300, 18))
    calibrator = make_calibrator("temperature").fit(logits, (rng.random((300, 18)) < 0.2).astype(float))
    classes = [f"c{i}" for i in range(18)]
    info = BundleInfo("xresnet1d50", classes, "shared18", pipeline.to_dict(), calibrator.to_dict(), [0.5] * 18)
    tracking.configure()
    with mlflow.start_run():
        return tracking.log_model(save_bundle(folder / "bundle", model, info), signals[:2],
                                  python_model=serving.pyfunc_model(), signature=serving.signature(100.0, classes),
                                  metadata={})


def inference(records: int, out: Path) -> None:
    from ecgtl import tracking
    from ecgtl.export import export
    from ecgtl.inference import Predictor
    from ecgtl.onnx_runner import OnnxPipeline

    uri = _bundle_uri(out)
    export(uri, out / "onnx")
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor(tracking.download_model(uri, Path(tmp)))
    runner = OnnxPipeline(out / "onnx")
    signals = np.random.default_rng(1).normal(0, 0.3, (records, 12, 1000)).astype(np.float32)
    torch_s = best_of(lambda: predictor.predict_proba(signals))
    onnx_s = best_of(lambda: runner.predict(signals))
    difference = float(np.abs(predictor.predict_proba(signals) - runner.predict(signals)[0]).max())
    print(f"inference, {records} records of 10 s, XResNet1d50, {os.cpu_count()} cores")
    print(f"  torch pipeline      {records / torch_s:8.1f} records/s")
    print(f"  ONNX Runtime        {records / onnx_s:8.1f} records/s  ({torch_s / onnx_s:.2f}x the torch pipeline)")
    print(f"  largest difference  {difference:.2e} of calibrated probability   goal <= 1e-4: "
          f"{'met' if difference <= 1e-4 else 'NOT met'}")


def system_metrics() -> None:
    from ecgtl import tracking
    from ecgtl.stages.configs import DataConfig, FinetuneConfig
    from ecgtl.stages.finetune import finetune, scratch_config
    from ecgtl.training.config import TrainConfig

    base = scratch_config(FinetuneConfig(data=DataConfig(spec="synthetic:g12ec?n=300&seed=3"), model="xresnet1d18",
                                         train=TrainConfig(epochs=3, batch_size=64), n_bootstrap=20))
    seconds = {}
    for on in (False, True, False, True):  # interleaved: drift of the machine hits both alike
        result = finetune(replace(base, train=replace(base.train, system_metrics=on, seed=int(on))), register=False)
        history = tracking.metric_history(result.run_id, "epoch_seconds")
        seconds.setdefault(on, []).extend(history[1:])  # the first epoch warms up
    off, on = np.median(seconds[False]), np.median(seconds[True])
    cost = (on - off) / off
    print(f"system metrics, XResNet1d18 fine-tune of 300 records: {off:.2f} s/epoch off, {on:.2f} s/epoch on: "
          f"{cost:+.1%}   goal < 2 %: {'met' if abs(cost) < 0.02 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/export"))
    args = parser.parse_args()
    args.out = use_out_folder(args.out)
    inference(args.records, args.out)
    system_metrics()
