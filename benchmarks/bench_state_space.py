"""State-space encoders on real ECGs and at full size: S4D against the CNNs.

    python benchmarks/bench_state_space.py --data ../shared/ecg-samples/ptbxl-real-1819 \
        [--parts supervised,rates,speed] [--label-sets ptbxl-superdiagnostic,ptbxl-all] [--seeds 3] [--out DIR]

1. `supervised`: each model of --models (S4D and XResNet1d101) trained as `bench_real_ptbxl.py` trains its label
   sets (Strodthoff et al.'s recipe: 2.5 s random crops at 100 Hz, AdamW + one-cycle lr 1e-2, batch 128, --epochs,
   selected on fold 9, sliding windows with max aggregation on fold 10, `scaling=record`), on each label set, for
   each seed; the mean fold-10 macro AUC over seeds with its two-level bootstrap CI (seeds, then records), and the
   difference S4D - XResNet1d101 paired on the same records and seeds.
2. `rates`: the seed models of part 1 (trained at 100 Hz) evaluated on fold 10 with the records at 50, 100, 250
   and 500 Hz (the subset is stored at 500 Hz; lower rates by the pipeline's anti-aliased resampling): `resample`
   (brought to the model's 100 Hz) and, for S4D, `native` (read at their own rate, the step scaled).
3. `speed`: one training step's time and the peak resident memory of each model of --speed-models on a batch of
   128 crops of 2.5 s at 100 Hz, in a fresh process each, and the epoch time this gives at the full synthetic
   PTB-XL size (the 17 441 training records of folds 1-8; extrapolated from --steps steps, data loading excluded:
   `bench_train.py` measures the loader at 85x the model).

Runs go to one MLflow store under --out (default benchmarks/out/state-space, ignored by git); a run with the same
parameters is reused, so re-running prints the tables again. The tables are also written to --out/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _store import use_out_folder

ROOT = Path(__file__).resolve().parents[1]
RATES = (50, 100, 250, 500)
FULL_TRAINING_RECORDS = 17_441  # PTB-XL folds 1-8
BATCH, CROP = 128, 250  # 2.5 s at 100 Hz


def supervised_runs(data: str, models: list[str], label_sets: list[str], seeds: int, epochs: int) -> dict:
    """{(model, label set): [StageResult per seed]}."""
    from ecgtl.stages.configs import DataConfig, PretrainConfig
    from ecgtl.stages.pretrain import pretrain
    from ecgtl.stages.reuse import reuse_or_run
    from ecgtl.training.config import TrainConfig

    results = {}
    for label_set in label_sets:
        for model in models:
            for seed in range(seeds):
                config = PretrainConfig(data=DataConfig(spec=f"ptbxl:{data}", label_set=label_set, scaling="record"),
                                        model=model, train=TrainConfig(epochs=epochs, batch_size=128, lr=1e-2,
                                                                       seed=seed, explain_examples=0))
                print(f"--- {label_set}: {model}, seed {seed}, {epochs} epochs", file=sys.stderr, flush=True)
                results.setdefault((model, label_set), []).append(
                    reuse_or_run("pretrain", config, lambda c=config: pretrain(c, register=False)))
    return results


def _over_seeds(predictions: list[dict], reference: list[dict] | None = None) -> str:
    from ecgtl.evaluation.metrics import bootstrap_over_seeds

    summary = bootstrap_over_seeds([p["labels"] for p in predictions], [p["logits"] for p in predictions],
                                   None if reference is None else [p["logits"] for p in reference])
    sign = "+" if reference is not None else ""
    return f"{summary.estimate:{sign}.3f} [{summary.low:{sign}.3f}, {summary.high:{sign}.3f}]"


def supervised_table(results: dict, models: list[str]) -> str:
    from ecgtl import tracking

    candidate, reference = models[0], models[-1]
    lines = ["| label set | model | seeds | fold-10 macro AUC, mean over seeds [95% CI] | per seed | "
             "minutes per run |", "|---|---|---|---|---|---|"]
    predictions = {key: [tracking.load_predictions(r.run_id) for r in runs] for key, runs in results.items()}
    for (model, label_set), runs in results.items():
        per_seed = ", ".join(f"{r.metrics['test_macro_auc']:.3f}" for r in runs)
        minutes = np.mean([tracking.run_seconds(r.run_id) for r in runs]) / 60
        lines.append(f"| {label_set} | {model} | {len(runs)} | {_over_seeds(predictions[model, label_set])} | "
                     f"{per_seed} | {minutes:.1f} |")
    for label_set in dict.fromkeys(label_set for _, label_set in results):
        if (candidate, label_set) in predictions and (reference, label_set) in predictions and candidate != reference:
            paired = _over_seeds(predictions[candidate, label_set], predictions[reference, label_set])
            lines.append(f"| {label_set} | **{candidate} − {reference}**, paired | "
                         f"{len(predictions[candidate, label_set])} | **{paired}** | | |")
    return "\n".join(lines)


def rate_runs(results: dict, data: str) -> dict:
    """{(model, label set, rate, policy): [StageResult per seed]}."""
    from ecgtl.stages.configs import EvaluateConfig
    from ecgtl.stages.evaluate import evaluate
    from ecgtl.stages.reuse import reuse_or_run

    evaluated = {}
    for (model, label_set), runs in results.items():
        policies = ("resample", "native") if model.startswith("s4d") else ("resample",)
        for rate in RATES:
            for policy in policies:
                for run in runs:
                    config = EvaluateConfig(model_uri=run.model_uri, spec=f"ptbxl:{data}", split="test",
                                            n_bootstrap=100, record_fs=rate, rate_policy=policy, explain_examples=0)
                    print(f"--- {model} {label_set}: records at {rate} Hz, {policy}", file=sys.stderr, flush=True)
                    evaluated.setdefault((model, label_set, rate, policy), []).append(
                        reuse_or_run("evaluate", config, lambda c=config: evaluate(c)))
    return evaluated


def rate_table(evaluated: dict) -> str:
    from ecgtl import tracking

    lines = ["| label set | model | policy | " + " | ".join(f"{rate} Hz" for rate in RATES) + " |",
             "|---|---|---|" + "---|" * len(RATES)]
    rows = dict.fromkeys((label_set, model, policy) for model, label_set, _, policy in evaluated)
    for label_set, model, policy in rows:
        cells = [_over_seeds([tracking.load_predictions(r.run_id) for r in evaluated[model, label_set, rate, policy]])
                 for rate in RATES]
        lines.append(f"| {label_set} | {model} | {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


STEP = f"""
import json, resource, sys, time, torch
from ecgtl.models import create_model
torch.set_num_threads(int(sys.argv[3]))
model = create_model(sys.argv[1], 71)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn({BATCH}, 12, {CROP}), torch.rand({BATCH}, 71).round()
def step():
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward(); optimizer.step(); optimizer.zero_grad()
step()  # warm-up
started = time.perf_counter()
for _ in range(int(sys.argv[2])):
    step()
print(json.dumps({{"step_s": (time.perf_counter() - started) / int(sys.argv[2]),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "params": sum(p.numel() for p in model.parameters())}}))
"""


def speed_table(models: list[str], steps: int, threads: int) -> str:
    lines = ["| model | parameters | s per step (batch 128 × 2.5 s at 100 Hz) | epoch at full PTB-XL size "
             "(17 441 records), extrapolated | peak resident memory |", "|---|---|---|---|---|"]
    for model in models:
        done = subprocess.run([sys.executable, "-c", STEP, model, str(steps), str(threads)], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        k = json.loads(done.stdout.strip().splitlines()[-1])
        epoch_min = k["step_s"] * -(-FULL_TRAINING_RECORDS // BATCH) / 60
        lines.append(f"| {model} | {k['params']:,} | {k['step_s']:.2f} | {epoch_min:.1f} min | "
                     f"{k['peak_mib']:.0f} MiB |")
    return "\n".join(lines) + f"\n\n{threads} threads, {steps} steps after one warm-up step, 71 classes (ptbxl-all)."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "ecg-samples" / "ptbxl-real-1819")
    parser.add_argument("--parts", default="supervised,rates,speed")
    parser.add_argument("--models", default="s4d_small,xresnet1d101", help="candidate first, reference last")
    parser.add_argument("--label-sets", default="ptbxl-superdiagnostic,ptbxl-all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--speed-models", default="s4d_small,s4d,xresnet1d50,xresnet1d101")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "state-space")
    args = parser.parse_args()
    parts, models = set(args.parts.split(",")), args.models.split(",")
    data = str(args.data.resolve())
    sections = []
    if "speed" in parts:
        sections.append(f"## Training step and memory on {args.threads} CPU threads\n\n"
                        f"{speed_table(args.speed_models.split(','), args.steps, args.threads)}")
        print(sections[-1], flush=True)
    out = use_out_folder(args.out)
    if parts & {"supervised", "rates"}:
        if not (args.data / "ptbxl_database.csv").exists():
            raise SystemExit(f"{args.data}: no ptbxl_database.csv (pass --data PATH to the real PTB-XL subset)")
        started = time.perf_counter()
        results = supervised_runs(data, models, args.label_sets.split(","), args.seeds, args.epochs)
        sections.append(f"## Supervised on the real PTB-XL subset, {args.epochs} epochs\n\n"
                        f"{supervised_table(results, models)}\n\n{(time.perf_counter() - started) / 60:.0f} min")
        print(sections[-1], flush=True)
        if "rates" in parts:
            started = time.perf_counter()
            sections.append("## Trained at 100 Hz, fold 10 read at other rates (mean macro AUC over seeds [95% CI])"
                            f"\n\n{rate_table(rate_runs(results, data))}\n\n"
                            f"{(time.perf_counter() - started) / 60:.0f} min")
            print(sections[-1], flush=True)
    (out / "results.md").write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
