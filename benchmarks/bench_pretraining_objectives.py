"""Pretraining objectives and transfer baselines, as the `pretraining-objectives` preset, twice; and the cost of
contrastive pretraining at full synthetic PTB-XL size.

Parts (`--parts synthetic,real,scale`):
- `synthetic`: `ecgtl ablation --preset pretraining-objectives --quick` on the embedded synthetic data: supervised
  vs contrastive pretraining on synthetic PTB-XL (800 records) x init (pretrained, linear_probe, random_frozen,
  scratch) x target fraction (1, 0.25, 0.1) x 3 seeds on synthetic Georgia (500 records), XResNet1d18.
- `real`: the same grid on the shared real PTB-XL subset (`../shared/ecg-samples/ptbxl-real-1819`): pretraining
  on folds 1-8 (contrastive: without any label, `probe_epochs=0`; supervised: with them), fine-tuning with labels
  at the fractions above, fold-9 validation, fold-10 test; label set `superdiagnostic` (5 classes, so that 182
  test records give usable CIs), per-record scaling as the data come standardised.
- `scale`: one epoch of supervised and of contrastive pretraining of XResNet1d50 on the full synthetic PTB-XL size
  (21 837 records), timed over `--batches` batches of 128 and extrapolated to the epoch, and the peak memory
  (RSS) of each, each in its own process. Goal: contrastive within the memory a supervised run needs.

    python benchmarks/bench_pretraining_objectives.py [--parts synthetic,real,scale] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from _store import use_out_folder  # noqa: E402

sys.path.insert(0, str(ROOT))
FRACTIONS = (1.0, 0.25, 0.1)


def run_preset(**changes) -> dict:
    from ecgtl.stages.ablation import ablation
    from ecgtl.stages.configs import AblationConfig

    started = time.perf_counter()
    results = ablation(AblationConfig(preset="pretraining-objectives", **changes))
    results["seconds"] = time.perf_counter() - started
    return results


def table(results: dict) -> str:
    """The preset's summary section, and the wall time."""
    summary = results["summary"]
    section = summary[summary.index("## pretraining objectives"):] if "## pretraining objectives" in summary else summary
    return section.strip() + f"\n\nwall time (all cells, one process): {results['seconds'] / 60:.1f} min"


def scale_one(objective: str, batches: int) -> dict:
    """One process: prepare (cached) the full-size synthetic PTB-XL, train `batches` batches, report."""
    import numpy as np
    import torch

    from ecgtl.data.dataset import batch_bounds, valid_lengths
    from ecgtl.models import create_model
    from ecgtl.stages.common import fit_pipeline, load_data
    from ecgtl.stages.configs import DataConfig
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.objectives import objective_class

    data = DataConfig(spec="synthetic:ptbxl?n=21837&seed=0")
    config = TrainConfig(batch_size=128)
    prepared, rows = load_data(data, 0)
    train = prepared.split("train")
    pipeline = fit_pipeline(data, config, prepared, rows)
    model = create_model("xresnet1d50", len(prepared.classes))
    trained = objective_class(objective)()  # the objective's own loss, as the training loop computes it
    trained.setup(model, pipeline, config, torch.device("cpu"))
    network = trained.network(model)
    optimizer = torch.optim.AdamW([p for _, group in trained.layer_groups(model) for p in group.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    seconds, done = 0.0, 0
    for i, (batch_views, labels) in enumerate(pipeline.train_views(train, rows, 128, 0, 0, n_views=trained.n_views)):
        started = time.perf_counter()
        loss = trained.loss(network, batch_views, labels, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first batch warms up
            seconds += time.perf_counter() - started
            done += 1
        if done >= batches:
            break
    epoch_batches = len(batch_bounds(len(rows), 128))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"objective": objective, "records": len(rows), "seconds_per_batch": seconds / done,
            "epoch_minutes": seconds / done * epoch_batches / 60, "peak_rss_mb": peak_mb,
            "cache_gb": float(np.prod(train.signals.shape) * 4 / 1e9), "lengths": int(valid_lengths(train)[0])}


def scale(batches: int) -> str:
    lines = ["| objective | training records | s / batch of 128 | one epoch (extrapolated) | peak RSS |",
             "|---|---|---|---|---|"]
    found = {}
    for objective in ("supervised", "contrastive"):
        done = subprocess.run([sys.executable, __file__, "--scale-one", objective, "--batches", str(batches)],
                              capture_output=True, text=True, check=True, env=os.environ)
        found[objective] = json.loads(done.stdout.strip().splitlines()[-1])
        r = found[objective]
        lines.append(f"| {objective} | {r['records']} | {r['seconds_per_batch']:.2f} | {r['epoch_minutes']:.1f} min | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GB |")
    ratio = found["contrastive"]["peak_rss_mb"] / found["supervised"]["peak_rss_mb"]
    lines.append(f"\ncontrastive / supervised peak memory: {ratio:.2f} (goal: within a supervised run's memory, "
                 f"i.e. about 1 or a little more for the second view's activations): "
                 f"{'met' if ratio <= 1.5 else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="synthetic,real,scale")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "ecg-samples" / "ptbxl-real-1819")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pretraining-objectives")
    parser.add_argument("--scale-one", default="")
    parser.add_argument("--model", default="", help="the real part's architecture (default: the quick preset's)")
    args = parser.parse_args()
    args.out = use_out_folder(args.out)
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.batches)))
        return
    report = []
    parts = args.parts.split(",")
    if "synthetic" in parts:
        os.environ["MLFLOW_EXPERIMENT_NAME"] = "objectives-synthetic"
        report += ["## synthetic (embedded default, quick sizing)", "",
                   table(run_preset(quick=True, seeds=args.seeds))]
    if "real" in parts:
        if not (args.data / "ptbxl_database.csv").exists():
            print(f"{args.data}: not found; skipping the real-data part", file=sys.stderr)
        else:
            os.environ["MLFLOW_EXPERIMENT_NAME"] = "objectives-real" + (f"-{args.model}" if args.model else "")
            spec = f"ptbxl:{args.data}"
            report += ["", "## real PTB-XL subset (1 819 records; superdiagnostic)", "",
                       table(run_preset(quick=True, seeds=args.seeds, source=spec, target=spec,
                                        label_set="superdiagnostic", scaling="record", probe_epochs=0,
                                        pretrain_epochs=10, finetune_epochs=5,
                                        **({"model": args.model} if args.model else {})))]
    if "scale" in parts:
        report += ["", "## full synthetic PTB-XL size, XResNet1d50, 2.5 s crops, 2 cores", "", scale(args.batches)]
    text = "\n".join(report) + "\n"
    (args.out / f"results-{'-'.join(parts)}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
