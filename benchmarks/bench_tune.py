"""Pruning pays: the same trial budget with Hyperband pruning vs without, on the embedded data, over sampler seeds.

Each study fine-tunes a (quick) pretrained model on synthetic Georgia; the objective is the validation macro AUC.
For every sampler seed it runs N trials with `--pruner hyperband` and N with `--pruner none` (fresh studies and
store) and counts the epochs actually trained. Goal: pruning reaches the same best validation AUC (within
0.005) with at most 50% of the epochs. It also states which schedule family won (best family vs runner-up on
validation records, paired bootstrap CI): a finding about synthetic data only.

    python benchmarks/bench_tune.py [--trials 12] [--epochs 6] [--seeds 0,1]
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
    parser.add_argument("--pruner", default="hyperband", help="the pruner compared with no pruning")
    parser.add_argument("--reduction-factor", type=int, default=None, help="Hyperband's (default: the config's)")
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
    print(f"cores {os.cpu_count()}; {args.trials} trials x {args.epochs} epochs per study; target {args.target}")
    print(f"{'sampler seed':>12}  {'pruner':>9}  {'best val AUC':>12}  {'epochs trained':>14}  {'wall s':>7}  pruned")
    results = {}
    factor = {"reduction_factor": args.reduction_factor} if args.reduction_factor else {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for pruner in ("none", args.pruner):
            started = time.perf_counter()
            summary = tune(TuneConfig(finetune=base, space=replace(SearchSpace(), batch_size="64"), n_trials=args.trials,
                                      pruner=pruner, sampler_seed=seed, final=False, **factor,
                                      study_name=f"bench-{pruner}-{seed}", storage=f"sqlite:///{workdir}/optuna.db"))
            parent = client.search_runs([client.get_experiment_by_name("bench-tune").experiment_id],
                                        f"tags.`ecgtl.study` = 'bench-{pruner}-{seed}' and tags.`ecgtl.stage` = 'trial'",
                                        max_results=1000)
            epochs = sum(len(client.get_metric_history(r.info.run_id, "val_macro_auc")) for r in parent)
            results[(seed, pruner)] = (summary["best_value"], epochs, summary)
            print(f"{seed:>12}  {pruner:>9}  {summary['best_value']:>12.4f}  {epochs:>14}  "
                  f"{time.perf_counter() - started:>7.0f}  {summary['counts']['PRUNED']}")
    print()
    for seed in sorted({s for s, _ in results}):
        (auc_none, epochs_none, _), (auc_hb, epochs_hb, summary) = results[(seed, "none")], results[(seed, args.pruner)]
        same = auc_hb >= auc_none - 0.005
        share = epochs_hb / epochs_none
        print(f"seed {seed}: {args.pruner} best {auc_hb:.4f} vs {auc_none:.4f} ({auc_hb - auc_none:+.4f}; goal >= -0.005: "
              f"{'met' if same else 'NOT met'}), epochs {epochs_hb}/{epochs_none} = {share:.0%} (goal <= 50%: "
              f"{'met' if share <= 0.5 else 'NOT met'})")
        print(f"  schedules without pruning (synthetic data only): {results[(seed, 'none')][2].get('schedule_finding')}")


if __name__ == "__main__":
    main()
