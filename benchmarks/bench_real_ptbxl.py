"""Real ECGs: the shared 1,819-record PTB-XL subset (official folds; fold 10 = test), three measurements.

    python benchmarks/bench_real_ptbxl.py --data ../shared/ecg-samples/ptbxl-real-1819 \
        [--cinc ../shared/ecg-samples/cinc2021-smoke] [--parts labelsets,sim2real,cinc] [--out DIR]

1. `labelsets`: Strodthoff et al.'s recipe (XResNet1d101, 2.5 s random crops at 100 Hz, AdamW + one-cycle,
   lr 1e-2, batch 128, sliding-window max aggregation) trained on folds 1-8 for each PTB-XL label set and
   shared18, selected on fold 9, scored on fold 10: macro AUC with its 95% bootstrap CI beside the full-data
   values of Strodthoff et al. 2020 (Table II, xresnet1d101).
2. `sim2real`: the study's exp1 with this real target: pretrained on synthetic PTB-XL vs scratch at target
   fractions 1, 0.5, 0.25, 0.1, three seeds, through the ablation stage (`data.scaling=record` on both
   sides: the synthetic source is in mV, these records are standardised per lead).
3. `cinc`: the shared18 model of part 1 (and the synthetic-only pretraining of part 2) on the ~70 real CinC
   records, with the calibrator stored in the bundle (nothing refitted).

Everything goes to one MLflow store under --out (default benchmarks/out/real-ptbxl, ignored by git); a run
with the same parameters is reused, so re-running prints the tables again without training. Each figure is
printed beside its reference, with the run's wall time; the tables are also written to --out/results.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Strodthoff et al. 2020, "Deep learning for ECG analysis: benchmarks and insights from PTB-XL", Table II
# (xresnet1d101, full PTB-XL, fold 10): macro AUC.
PUBLISHED = {"ptbxl-all": 0.925, "ptbxl-diagnostic": 0.937, "ptbxl-superdiagnostic": 0.928,
             "ptbxl-form": 0.896, "ptbxl-rhythm": 0.957, "shared18": None}
LABEL_SETS = tuple(PUBLISHED)
FRACTIONS = (1.0, 0.5, 0.25, 0.1)


def _environment(out: Path) -> None:
    """The store, caches and (MLflow's default artifact root is relative) the artifacts all under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out.resolve()}/mlflow.db")
    os.environ.setdefault("ECGTL_CACHE_DIR", str(out.resolve() / "cache"))
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "bench-real-ptbxl")
    os.environ.pop("MLFLOW_RUN_ID", None)


def _ci(metrics: dict, prefix: str = "test_macro_auc") -> str:
    return f"{metrics[prefix]:.3f} [{metrics[prefix + '_ci_low']:.3f}, {metrics[prefix + '_ci_high']:.3f}]"


def label_set_runs(data: str, epochs: int, model: str) -> dict:
    from ecgtl.stages.configs import DataConfig, PretrainConfig
    from ecgtl.stages.pretrain import pretrain
    from ecgtl.stages.reuse import reuse_or_run
    from ecgtl.training.config import TrainConfig

    results = {}
    for label_set in LABEL_SETS:
        config = PretrainConfig(data=DataConfig(spec=f"ptbxl:{data}", label_set=label_set, scaling="record"),
                                model=model, train=TrainConfig(epochs=epochs, batch_size=128, lr=1e-2))
        print(f"--- {label_set}: {model}, {epochs} epochs", file=sys.stderr, flush=True)
        results[label_set] = reuse_or_run("pretrain", config, lambda c=config: pretrain(c, register=False))
    return results


def label_set_table(results: dict) -> str:
    from ecgtl import tracking

    lines = ["| label set | classes (in macro / with an AUC) | fold-10 macro AUC [95% CI] | all classes | "
             "Strodthoff et al. (full PTB-XL) | wall time |", "|---|---|---|---|---|---|"]
    for label_set, result in results.items():
        k = result.metrics
        published = PUBLISHED[label_set]
        lines.append(f"| {label_set} | {int(k['test_n_classes_in_macro'])} / {int(k['test_n_classes_evaluated'])} | "
                     f"{_ci(k)} | {k['test_macro_auc_all_classes']:.3f} | "
                     f"{'—' if published is None else f'{published:.3f}'} | "
                     f"{tracking.run_seconds(result.run_id) / 60:.1f} min |")
    return "\n".join(lines)


def sim_to_real(data: str, seeds: int) -> dict:
    from ecgtl.stages.ablation import ablation
    from ecgtl.stages.configs import AblationConfig

    config = AblationConfig(preset="exp1-target-fraction", axes="target_fraction=" + ",".join(map(str, FRACTIONS)),
                            seeds=seeds, target=f"ptbxl:{data}", label_set="shared18", scaling="record",
                            model="xresnet1d50", pretrain_epochs=8, finetune_epochs=15)
    started = time.perf_counter()
    results = ablation(config)
    results["seconds"] = time.perf_counter() - started
    return results


def sim_to_real_table(results: dict) -> str:
    aggregate, paired = results["aggregate"], results["paired"]
    lines = ["| target fraction | fine-tuned (synthetic source) | scratch | gain [95% CI] | p (gain <= 0) |",
             "|---|---|---|---|---|"]
    for fraction in FRACTIONS:
        row = {}
        for init in ("pretrained", "scratch"):
            match = aggregate[(aggregate["init"] == init) & (aggregate["target_fraction"].astype(float) == fraction)]
            row[init] = (f"{match['auc_mean'].iloc[0]:.3f} [{match['auc_ci_low'].iloc[0]:.3f}, "
                         f"{match['auc_ci_high'].iloc[0]:.3f}]") if len(match) else "—"
        gain = paired[paired["target_fraction"].astype(float) == fraction]
        text, p = ("—", "—") if not len(gain) else (
            f"{gain['diff'].iloc[0]:+.3f} [{gain['diff_ci_low'].iloc[0]:+.3f}, {gain['diff_ci_high'].iloc[0]:+.3f}]",
            f"{gain['p_value'].iloc[0]:.3f}")
        lines.append(f"| {fraction:g} | {row['pretrained']} | {row['scratch']} | {text} | {p} |")
    return "\n".join(lines) + f"\n\nwall time (ablation, all cells): {results['seconds'] / 60:.1f} min"


def cinc_lines(cinc: str, models: dict[str, str]) -> str:
    from ecgtl.stages.configs import EvaluateConfig
    from ecgtl.stages.evaluate import evaluate

    lines = []
    for name, uri in models.items():
        started = time.perf_counter()
        k = evaluate(EvaluateConfig(model_uri=uri, spec=f"cinc:{cinc}", split="all", n_bootstrap=1000)).metrics
        lines.append(f"- {name}: macro AUC {_ci(k)} over {int(k['test_n_classes_in_macro'])} classes "
                     f"({k['test_macro_auc_all_classes']:.3f} over all {int(k['test_n_classes_evaluated'])} with an "
                     f"AUC), ECE {k['test_ece']:.3f} -> {k.get('test_ece_temperature', float('nan')):.3f} stored "
                     f"calibration, {int(k['test_n_records'])} records of which "
                     f"{int(k['test_n_records_seen_in_training'])} seen in training; {time.perf_counter() - started:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "ecg-samples" / "ptbxl-real-1819")
    parser.add_argument("--cinc", type=Path, default=ROOT.parent / "shared" / "ecg-samples" / "cinc2021-smoke")
    parser.add_argument("--parts", default="labelsets,sim2real,cinc")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--model", default="xresnet1d101")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "real-ptbxl")
    args = parser.parse_args()
    if not (args.data / "ptbxl_database.csv").exists():
        raise SystemExit(f"{args.data}: no ptbxl_database.csv (pass --data PATH to the real PTB-XL subset)")
    args.data, args.cinc, args.out = args.data.resolve(), args.cinc.resolve(), args.out.resolve()
    _environment(args.out)
    parts = set(args.parts.split(","))
    sections, models = [], {}
    if "labelsets" in parts or "cinc" in parts:
        results = label_set_runs(str(args.data.resolve()), args.epochs, args.model)
        sections.append(f"## Real PTB-XL subset, {args.model}, {args.epochs} epochs\n\n{label_set_table(results)}")
        models["real PTB-XL (shared18)"] = results["shared18"].model_uri
    if "sim2real" in parts or "cinc" in parts:
        results = sim_to_real(str(args.data.resolve()), args.seeds)
        sections.append(f"## Sim-to-real: synthetic PTB-XL source, real PTB-XL target\n\n{sim_to_real_table(results)}")
        source = results["pretraining"]["run_id"].dropna()
        if len(source):
            from ecgtl import runs, tracking

            models["synthetic PTB-XL only"] = tracking.run_info(source.iloc[0])[0][runs.MODEL_URI]
    if "cinc" in parts and args.cinc.exists():
        sections.append(f"## On the real CinC records ({args.cinc.name})\n\n{cinc_lines(str(args.cinc.resolve()), models)}")
    text = "\n\n".join(sections) + "\n"
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
