"""Pruning pays: the same trial budget with each pruner vs without, on the embedded data, over sampler seeds.

Each study fine-tunes a (quick) pretrained model on synthetic Georgia; the objective is the validation macro AUC.
For every sampler seed it runs N trials without pruning and N with each pruner of `--pruners` (fresh studies,
one store) and counts the epochs actually trained. Goal: the same best validation AUC (within 0.005) with at
most 50% of the epochs. It also states which schedule family won without pruning (best family vs runner-up on
validation records, paired bootstrap CI): a finding about synthetic data only.

    python benchmarks/bench_tune.py [--trials 12] [--epochs 6] [--seeds 0,1]
    python benchmarks/bench_tune.py --trials 24 --epochs 20 \
        --pruners hyperband:2,hyperband:3,successive_halving:3,median     # trials of real fine-tuning length
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--target", default="synthetic:g12ec?n=500&seed=0")
    parser.add_argument("--pruners", default="hyperband:3",
                        help="pruners compared with no pruning, NAME[:REDUCTION_FACTOR] separated by commas")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ecgtl-bench-tune-"))
    os.environ.update({"ECGTL_CACHE_DIR": str(workdir / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
                       "MLFLOW_EXPERIMENT_NAME": "bench-tune"})
    os.environ.pop("MLFLOW_RUN_ID", None)
    import mlflow

    from ecgtl.stages.configs import DataConfig, FinetuneConfig, PretrainConfig, SearchSpace, TuneConfig
    from ecgtl.stages.pretrain import pretrain
    from ecgtl.stages.tune import tune
    from ecgtl.training.config import TrainConfig

    pretrained = pretrain(PretrainConfig(data=DataConfig(spec="synthetic:ptbxl?n=800&seed=0"), model="xresnet1d18",
                                         train=TrainConfig(epochs=3, batch_size=64), n_bootstrap=200), register=False)
    base = FinetuneConfig(data=DataConfig(spec=args.target), pretrained=pretrained.model_uri,
                          train=TrainConfig(epochs=args.epochs, batch_size=64), n_bootstrap=200)
    client = mlflow.MlflowClient()
    pruners = [_pruner_setting(text) for text in args.pruners.split(",")]
    print(f"cores {os.cpu_count()}; {args.trials} trials x {args.epochs} epochs per study; target {args.target}")
    print(f"{'sampler seed':>12}  {'pruner':>22}  {'best val AUC':>12}  {'epochs trained':>14}  {'wall s':>7}  pruned",
          flush=True)
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, factor in [("none", 3), *pruners]:
            label = _label(name, factor)
            study = f"bench-{name}-{factor}-{seed}"
            started = time.perf_counter()
            summary = tune(TuneConfig(finetune=base, space=replace(SearchSpace(), batch_size="64"), n_trials=args.trials,
                                      pruner=name, reduction_factor=factor, sampler_seed=seed, final=False,
                                      study_name=study, storage=f"sqlite:///{workdir}/optuna.db"))
            trials = client.search_runs([client.get_experiment_by_name("bench-tune").experiment_id],
                                        f"tags.`ecgtl.study` = '{study}' and tags.`ecgtl.stage` = 'trial'",
                                        max_results=1000)
            epochs = sum(len(client.get_metric_history(r.info.run_id, "val_macro_auc")) for r in trials)
            results[(seed, label)] = (summary["best_value"], epochs, summary)
            print(f"{seed:>12}  {label:>22}  {summary['best_value']:>12.4f}  {epochs:>14}  "
                  f"{time.perf_counter() - started:>7.0f}  {summary['counts']['PRUNED']}", flush=True)
    print()
    seeds = sorted({s for s, _ in results})
    print(f"{'pruner':>22}  " + "  ".join(f"{'seed ' + str(s) + ': best (vs none), epochs':>38}" for s in seeds)
          + "  goal: best within 0.005, <= 50% of the epochs, every seed")
    for name, factor in pruners:
        label, cells, met = _label(name, factor), [], True
        for seed in seeds:
            (auc_none, epochs_none, _), (auc, epochs, _) = results[(seed, "none")], results[(seed, label)]
            share = epochs / epochs_none
            met &= auc >= auc_none - 0.005 and share <= 0.5
            cells.append(f"{auc:.4f} ({auc - auc_none:+.4f}), {epochs}/{epochs_none} = {share:.0%}")
        print(f"{label:>22}  " + "  ".join(f"{cell:>38}" for cell in cells) + f"  {'met' if met else 'NOT met'}")
    for seed in seeds:
        print(f"seed {seed}, schedules without pruning (synthetic data only): "
              f"{results[(seed, 'none')][2].get('schedule_finding')}")


def _pruner_setting(text: str) -> tuple[str, int]:
    name, _, factor = text.strip().partition(":")
    return name, int(factor or 3)


def _label(name: str, factor: int) -> str:
    return name if name in ("none", "median") else f"{name} rf {factor}"


if __name__ == "__main__":
    main()
