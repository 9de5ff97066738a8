"""The seed study's open questions, measured with the presets that answer them (quick sizing, 3 seeds, synthetic
data: the embedded generator; PTB-XL layout 800 records as source, Georgia layout 500 records as target,
XResNet1d18):

- `label-shift`: finetune.label_shift none / prior / em / reweight x target fraction (1, 0.1);
- `label-shift-evaluate`: the preset's pretrained (synthetic PTB-XL) model evaluated on synthetic Georgia's test
  split with `label_shift` none / prior / em (no fine-tuning: the source-target mismatch as it is);
- `exp3-rate-shift`: pretraining at 100 Hz with and without `fs_augment=50,500`, target records arriving at
  50 / 100 / 250 / 500 Hz (resampled to the model's 100 Hz);
- `transfer-matrix`: two sources x two targets (the default matrix: each layout, another seed without noise);
- `leads` + attributions: the leads ablation's per-class AUC with the limb or the precordial leads alone, beside
  the share of integrated-gradient attribution a 12-lead model gives the limb leads for that class (its test
  positives on the target). Do attributions and ablations agree? A Spearman correlation over classes answers.
- `label-shift-real` (real ECGs, when `../shared/ecg-samples/ptbxl-real-1819` is there): a model trained on folds
  1-8 of the real PTB-XL subset (superdiagnostic, 5 classes), its fold-10 test records resampled with
  replacement so that one class's prior doubles or halves (p(x | y) kept: a pure label shift, built on real
  records); EM's estimate of the shifted priors from the outputs alone against assuming no shift, and what
  `prior` / `em` do to ECE, Brier and F1 at the stored thresholds (20 resamplings per shift).

    python benchmarks/bench_open_questions.py [--parts label-shift,exp3-rate-shift,transfer-matrix,leads] [--out DIR]

Every figure is printed beside what it is compared with; the ablation summaries are in the store (`--out`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _store import use_out_folder  # noqa: E402

sys.path.insert(0, str(ROOT))
PARTS = ("label-shift", "label-shift-evaluate", "exp3-rate-shift", "transfer-matrix", "leads", "label-shift-real")
REAL = ROOT.parent / "shared" / "ecg-samples" / "ptbxl-real-1819"
SECTIONS = {"label-shift": "## label shift", "exp3-rate-shift": "## sampling-rate shift",
            "transfer-matrix": "## transfer matrix", "leads": "## leads"}


def run_preset(preset: str, seeds: int) -> dict:
    from ecgtl.stages.ablation import ablation
    from ecgtl.stages.configs import AblationConfig

    started = time.perf_counter()
    results = ablation(AblationConfig(preset=preset, quick=True, seeds=seeds))
    results["seconds"] = time.perf_counter() - started
    return results


def section(summary: str, heading: str) -> str:
    if heading not in summary:
        return summary
    rest = summary[summary.index(heading):]
    end = rest.find("\n## ", 3)
    return rest if end < 0 else rest[:end]


def attributions_against_ablation(results: dict) -> str:
    """Per class: limb-lead attribution share of the all12 model vs the AUC of limb6 minus precordial6 cells."""
    from scipy.stats import spearmanr

    from ecgtl import tracking
    from ecgtl.data.cache import prepare
    from ecgtl.data.dataset import valid_lengths
    from ecgtl.evaluation.report import metric_class_name
    from ecgtl.explain import class_examples
    from ecgtl.inference import load_bundle
    from ecgtl.stages.configs import QUICK, DataConfig

    cells = results["cells"]
    done = cells[(cells["status"] == "finished") & (cells["init"] == "pretrained")]
    model_run = done[(done["leads"] == "all12") & (done["seed"] == 0)]["run_id"].iloc[0]
    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_bundle(tracking.download_model(f"runs:/{model_run}/model", Path(tmp)))
    prepared = prepare(DataConfig(spec=QUICK.target).prepare_config())
    test = prepared.split("test")
    examples = class_examples(model, info.input_pipeline(), test.signals, test.labels, list(prepared.classes),
                              per_class=8, lengths=valid_lengths(test))
    rows, shares, gaps = [], [], []
    for name, found in examples.items():
        key = f"test_auc_{metric_class_name(name)}"
        if key not in done:
            continue
        limb = done[done["leads"] == "limb6"][key].mean()
        precordial = done[done["leads"] == "precordial6"][key].mean()
        share = float(np.mean([e.lead_importance[:6].sum() for e in found]))
        if np.isfinite(limb) and np.isfinite(precordial):
            shares.append(share)
            gaps.append(limb - precordial)
        rows.append(f"| {name} | {len(found)} | {share:.2f} | {limb:.3f} | {precordial:.3f} | {limb - precordial:+.3f} |")
    rho = spearmanr(shares, gaps) if len(shares) >= 3 else None
    lines = ["## leads: attributions against the leads ablation (target test positives, all12 model, seed 0)", "",
             "| class | records | limb share of \\|IG\\| | AUC limb6 | AUC precordial6 | limb − precordial |",
             "|---|---|---|---|---|---|", *rows, ""]
    if rho is not None:
        lines.append(f"Spearman rho (limb share vs limb − precordial AUC) over {len(shares)} classes: "
                     f"{rho.statistic:+.2f} (p {rho.pvalue:.3f}); goal: positive (attributions and ablations agree).")
    return "\n".join(lines)


def platt_ece(model_run_id: str, evaluate_run_id: str) -> float:
    """ECE of an evaluate run's logged test logits under the model's stored per-class Platt scaling."""
    from ecgtl import tracking
    from ecgtl.evaluation.calibration import calibration_summary
    from ecgtl.inference import load_bundle

    with tempfile.TemporaryDirectory() as tmp:
        _, info = load_bundle(tracking.download_model(f"runs:/{model_run_id}/model", Path(tmp)))
    test = tracking.load_predictions(evaluate_run_id, "test")
    return calibration_summary(test["labels"], info.em_calibrator().predict_proba(test["logits"])).ece


def evaluate_with_corrections() -> str:
    """The label-shift preset's source model on the target's test split: none, prior, em."""
    from ecgtl import runs, tracking
    from ecgtl.stages.ablation import expand
    from ecgtl.stages.configs import QUICK, AblationConfig, EvaluateConfig
    from ecgtl.stages.evaluate import evaluate
    from ecgtl.stages.reuse import finished_run

    pretraining = next(c.pretrain for c in expand(AblationConfig(preset="label-shift", quick=True, seeds=1))
                       if c.pretrain)
    tracking.configure()
    run_id = finished_run(runs.PRETRAIN, pretraining)
    lines = ["## label shift at evaluation (source model on the target's test split, no fine-tuning)", "",
             "| label_shift | macro AUC | micro AUC | ECE raw | ECE (Platt) | Brier | macro F1 | EM converged |",
             "|---|---|---|---|---|---|---|---|"]
    for method in ("none", "prior", "em"):
        result = evaluate(EvaluateConfig(model_uri=f"runs:/{run_id}/model", spec=QUICK.target, label_shift=method,
                                         n_bootstrap=200, explain_examples=0))
        k = result.metrics
        if "test_ece_platt" not in k:  # none keeps the primary calibrator: the Platt ECE of the same outputs
            k["test_ece_platt"] = platt_ece(run_id, result.run_id)
        converged = {1.0: "yes", 0.0: "no"}.get(k.get("test_label_shift_em_converged"), "–")
        lines.append(f"| {method} | {k['test_macro_auc']:.4f} | {k['test_micro_auc']:.4f} | {k['test_ece']:.4f} | "
                     f"{k['test_ece_platt']:.4f} | {k['test_brier']:.4f} | {k['test_macro_f1']:.3f} | {converged} |")
    return "\n".join(lines)


def label_shift_on_real_records(data: Path, resamplings: int = 20, n: int = 2000) -> str:
    """EM on a real model's calibrated outputs, under label shifts constructed by resampling real test records."""
    from ecgtl import runs, tracking
    from ecgtl.data.cache import prepare
    from ecgtl.data.dataset import valid_lengths
    from ecgtl.evaluation.calibration import calibrated_probabilities
    from ecgtl.evaluation.label_shift import correction_for
    from ecgtl.evaluation.report import StoredCalibration, evaluate_predictions
    from ecgtl.inference import load_bundle
    from ecgtl.stages.configs import DataConfig, PretrainConfig
    from ecgtl.stages.pretrain import pretrain
    from ecgtl.stages.reuse import reuse_or_run
    from ecgtl.training.config import TrainConfig

    config = PretrainConfig(data=DataConfig(spec=f"ptbxl:{data}", label_set="superdiagnostic", scaling="record"),
                            model="xresnet1d18", train=TrainConfig(epochs=10, batch_size=64, explain_examples=0),
                            n_bootstrap=200)
    result = reuse_or_run(runs.PRETRAIN, config, lambda: pretrain(config, register=False))
    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_bundle(tracking.download_model(f"runs:/{result.run_id}/model", Path(tmp)))
    prepared = prepare(config.data.prepare_config())
    test = prepared.split("test")
    logits = info.input_pipeline().predict_logits(model, test.signals, valid_lengths(test))
    calibrated = calibrated_probabilities(logits, info.em_calibrator())
    stored = StoredCalibration.from_bundle(info.posterior_calibrator, info.thresholds)
    source = np.asarray(info.train_priors)
    rng = np.random.default_rng(0)
    lines = ["## label shift on real records (PTB-XL subset, folds 1-8 -> resampled fold 10, superdiagnostic)", "",
             f"Test fold: {len(test)} records; each row: {resamplings} resamplings of {n} records.", "",
             "| shifted class | prior: train → shifted | mean abs prior error: no shift | EM | ECE (Platt) none → prior → em "
             "| Brier none → em | macro F1 none → em |", "|---|---|---|---|---|---|---|"]
    for j, name in enumerate(prepared.classes):
        for factor in (2.0, 0.5):
            wanted = float(np.clip(source[j] * factor, 0.02, 0.9))
            y = test.labels[:, j]
            weights = np.where(y == 1, wanted / max(y.mean(), 1e-6), (1 - wanted) / max(1 - y.mean(), 1e-6))
            errors, em_errors, metrics = [], [], {"none": [], "prior": [], "em": []}
            for _ in range(resamplings):
                rows = rng.choice(len(test), size=n, replace=True, p=weights / weights.sum())
                truth = test.labels[rows].mean(axis=0)
                found = correction_for("em", source, probabilities=calibrated[rows])
                errors.append(np.abs(source - truth).mean())
                em_errors.append(np.abs(found.target - truth).mean())
                for method, correction in (("none", None), ("prior", correction_for("prior", source, target=truth)),
                                           ("em", found)):
                    report = evaluate_predictions(None, None, test.labels[rows], logits[rows], prepared.classes,
                                                  n_bootstrap=1, stored=stored, correction=correction,
                                                  with_figures=False)
                    metrics[method].append([report.metrics[k] for k in (f"test_ece_{stored.calibrator.method}",
                                                                        "test_brier", "test_macro_f1")])
            mean = {k: np.mean(v, axis=0) for k, v in metrics.items()}
            lines.append(f"| {name} ×{factor:g} | {source[j]:.3f} → {np.mean([wanted]):.3f} | {np.mean(errors):.4f} | "
                         f"{np.mean(em_errors):.4f} | {mean['none'][0]:.4f} → {mean['prior'][0]:.4f} → "
                         f"{mean['em'][0]:.4f} | {mean['none'][1]:.4f} → {mean['em'][1]:.4f} | "
                         f"{mean['none'][2]:.3f} → {mean['em'][2]:.3f} |")
    lines += ["", "Goal: EM's prior error below the no-shift error (it recovers the shift from outputs alone)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "open-questions")
    args = parser.parse_args()
    use_out_folder(args.out)
    report = []
    for part in args.parts.split(","):
        if part == "label-shift-real":
            if (REAL / "ptbxl_database.csv").exists():
                os.environ["MLFLOW_EXPERIMENT_NAME"] = "open-questions-real"
                report.append(label_shift_on_real_records(REAL))
            else:
                print(f"{REAL}: not found; skipping the real-data part", file=sys.stderr)
            continue
        if part == "label-shift-evaluate":
            report.append(evaluate_with_corrections())
            continue
        results = run_preset(part, args.seeds)
        text = attributions_against_ablation(results) if part == "leads" else section(results["summary"],
                                                                                         SECTIONS[part])
        report.append(f"{text}\n\n({part}: {len(results['cells'])} cells, {results['seconds']:.0f} s here)")
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
