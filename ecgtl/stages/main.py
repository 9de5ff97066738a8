"""The whole study in one run: pretrain -> finetune -> scratch -> comparison table.

Like MLflow's multistep_workflow example, a step whose config (hash) already has a FINISHED run in the
experiment is reused instead of re-run. Steps run as nested runs of the main run. The comparison is a
paired bootstrap of fine-tuned vs scratch on the same target test records.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ecgtl import runs, timing, tracking
from ecgtl.config import flatten, reuse_key
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.metrics import PairedDifference, paired_bootstrap
from ecgtl.inputs import input_mismatch
from ecgtl.plotting import save_figure
from ecgtl.stages.common import StageResult
from ecgtl.stages.configs import MainConfig
from ecgtl.stages.finetune import finetune, report_timing, scratch_config
from ecgtl.stages.pretrain import pretrain
from ecgtl.stages.reuse import reuse_or_run


def comparison_table(results: dict[str, StageResult]) -> pd.DataFrame:
    rows = []
    for name, result in results.items():
        k = result.metrics
        rows.append({"model": name, "run_id": result.run_id, "test_macro_auc": k.get("test_macro_auc"),
                     "ci_low": k.get("test_macro_auc_ci_low"), "ci_high": k.get("test_macro_auc_ci_high"),
                     "test_ece": k.get("test_ece"), "test_ece_temperature": k.get("test_ece_temperature"),
                     "reused": result.reused})
    return pd.DataFrame(rows)


def main(config: MainConfig) -> dict[str, StageResult | PairedDifference]:
    config.validate()
    tracking.configure()
    timing.reset()
    target = parse_spec(config.finetune.data.spec).short_name
    source_data, target_data = config.pretrain.data, config.finetune.data
    differences = input_mismatch(source_data.contract, target_data.contract)
    if differences:
        raise EcgtlError(f"main: pretrain.data and finetune.data differ in {' and '.join(differences)}; "
                         "a fine-tuned model must take the inputs its pretraining took")
    tags = {runs.STAGE: runs.MAIN, runs.TARGET: target, runs.CONFIG_HASH: reuse_key(config)}
    name = f"main-{config.pretrain.model}-{target}-f{config.finetune.data.fraction:.2f}-s{config.finetune.train.seed}"
    with tracking.stage_run(name, tags, flatten(config)):
        pretrained = reuse_or_run(runs.PRETRAIN, config.pretrain, lambda: pretrain(config.pretrain, nested=True))
        tuned_config = replace(config.finetune, init="pretrained", pretrained=pretrained.model_uri,
                               model=config.pretrain.model)
        tuned = reuse_or_run(runs.FINETUNE, tuned_config, lambda: finetune(tuned_config, nested=True))
        baseline_config = scratch_config(tuned_config)
        baseline = reuse_or_run(runs.SCRATCH, baseline_config, lambda: finetune(baseline_config, nested=True))
        results = {"pretrained (source test)": pretrained, "fine-tuned": tuned, "scratch": baseline}
        table = comparison_table(results)
        a, b = tracking.load_predictions(tuned.run_id), tracking.load_predictions(baseline.run_id)
        if list(a["record_ids"]) != list(b["record_ids"]):
            raise EcgtlError("fine-tuned and scratch runs were scored on different test records (a changed target "
                             "or split since one of them ran)")
        difference = paired_bootstrap(a["labels"], a["logits"], b["logits"], n_resamples=config.n_bootstrap,
                                      seed=config.finetune.train.seed)
        tracking.log_epoch(0, {"finetuned_test_macro_auc": tuned.metrics["test_macro_auc"],
                               "scratch_test_macro_auc": baseline.metrics["test_macro_auc"],
                               "diff_macro_auc": difference.observed, "diff_macro_auc_ci_low": difference.low,
                               "diff_macro_auc_ci_high": difference.high, "diff_p_value": difference.p_value})
        # The observed difference on all test records, with the paired bootstrap's CI (not the bootstrap mean).
        table.loc[len(table)] = {"model": "fine-tuned - scratch (paired)", "test_macro_auc": difference.observed,
                                 "ci_low": difference.low, "ci_high": difference.high}
        print(table.drop(columns=["run_id"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"paired bootstrap: one-sided p = {difference.p_value:.4f} (H0: fine-tuned <= scratch)")
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / "comparison.csv", index=False)
            figure = go.Figure(go.Table(header=dict(values=list(table.columns)),
                                        cells=dict(values=[table[c].map(_cell) for c in table.columns])))
            figure.update_layout(title=f"Transfer to {target}: paired p = {difference.p_value:.4f}", width=1100)
            save_figure(figure, Path(tmp) / "comparison.html")
            tracking.log_artifacts(tmp, "comparison")
        report_timing()
    return {**results, "difference": difference}


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
