"""The seed study's open questions, measured with the presets that answer them (quick sizing, 3 seeds, synthetic
data: the embedded generator; PTB-XL layout 800 records as source, Georgia layout 500 records as target,
XResNet1d18):

- `label-shift`: finetune.label_shift none / prior / em / reweight x target fraction (1, 0.1);
- `exp3-rate-shift`: pretraining at 100 Hz with and without `fs_augment=50,500`, target records arriving at
  50 / 100 / 250 / 500 Hz (resampled to the model's 100 Hz);
- `transfer-matrix`: two sources x two targets (the default matrix: each layout, another seed without noise);
- `leads` + attributions: the leads ablation's per-class AUC with the limb or the precordial leads alone, beside
  the share of integrated-gradient attribution a 12-lead model gives the limb leads for that class (its test
  positives on the target). Do attributions and ablations agree? A Spearman correlation over classes answers.

    python benchmarks/bench_open_questions.py [--parts label-shift,exp3-rate-shift,transfer-matrix,leads] [--out DIR]

Every figure is printed beside what it is compared with; the ablation summaries are in the store (`--out`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _store import use_out_folder  # noqa: E402

sys.path.insert(0, str(ROOT))
PARTS = ("label-shift", "exp3-rate-shift", "transfer-matrix", "leads")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "open-questions")
    args = parser.parse_args()
    use_out_folder(args.out)
    report = []
    for part in args.parts.split(","):
        results = run_preset(part, args.seeds)
        text = attributions_against_ablation(results) if part == "leads" else section(results["summary"],
                                                                                         SECTIONS[part])
        report.append(f"{text}\n\n({part}: {len(results['cells'])} cells, {results['seconds']:.0f} s here)")
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
