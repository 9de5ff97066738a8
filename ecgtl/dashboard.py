"""`ecgtl dashboard`: a small static, offline site built from an experiment's runs (plotly.js embedded once per
page), also logged as artifacts of a `dashboard` run so the MLflow UI links to it.

Pages (each says so when it has nothing to show yet, instead of drawing an empty plot):
- `index.html`: the latest pretrain, finetune and scratch runs side by side (AUC with CI, ECE before/after,
  per-class AUC);
- `classes.html`: per-class test AUC against the class's prevalence in the source and in the target;
- `transfer.html`: fine-tuned vs scratch learning curves over the target fraction (all finished runs, averaged
  over seeds) and the latest ablation's figures;
- `calibration.html`: reliability before/after calibration of the latest finetune run, ECE table of all runs;
- `transfer.html` also draws the latest `transfer-matrix` ablation's heatmaps (gain and its lower CI bound);
- `explain.html`: an explanation example (integrated gradients on the 12-lead page) of the latest trained run
  that has one, and its lead-importance table;
- `tuning.html`: the latest study: validation AUC per trial by state, best trials;
- `registry.html`: registered models, versions, aliases and promotion decisions.
Runs are read through `ecgtl.runs` names, never raw strings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgtl import runs, tracking
from ecgtl.evaluation.calibration import CALIBRATION_METHODS, make_calibrator
from ecgtl.evaluation.figures import PALETTE, reliability_figure
from ecgtl.files import check_targets, write_files
from ecgtl.plotting import escape, figures_to_html

PAGES = (("index.html", "Overview"), ("classes.html", "Classes"), ("transfer.html", "Transfer"),
         ("calibration.html", "Calibration"), ("explain.html", "Explain"), ("tuning.html", "Tuning"),
         ("registry.html", "Registry"))
STAGE_COLOURS = {runs.PRETRAIN: PALETTE[2], runs.FINETUNE: PALETTE[0], runs.SCRATCH: PALETTE[1]}


def _nav(current: str, experiment: str) -> str:
    links = " ".join(f"<a href='{page}'>{'<b>' + title + '</b>' if page == current else title}</a>"
                     for page, title in PAGES)
    return f"<nav>{links}</nav><h1>ecgtl: {escape(experiment)}</h1>"


def _table(frame: pd.DataFrame) -> str:
    """An HTML table; a float column holding only whole numbers (counts, epochs) prints as integers
    (`194`, not `194.0000`), other numbers to 4 decimals."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_float_dtype(values) and values.notna().any() and (values.dropna() % 1 == 0).all() \
                and (values.dropna().abs() > 1).any():
            frame[column] = values.map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–", escape=True)


def _note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>"


def _latest(frame: pd.DataFrame, stage: str) -> pd.Series | None:
    part = frame[frame.get(runs.tag_column(runs.STAGE), pd.Series(dtype=str)) == stage] if not frame.empty else frame
    return None if part.empty else part.sort_values("start_time").iloc[-1]


def _metric(row: pd.Series, key: str) -> float:
    return float(row.get(runs.metric_column(key), np.nan))


# ------------------------------------------------------------------------------------------------ learning curves
def learning_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean test macro AUC and CI bounds per (target, stage, fraction) over seeds, finetune and scratch runs."""
    target, stage, fraction = (runs.tag_column(k) for k in (runs.TARGET, runs.STAGE, runs.FRACTION))
    auc, low, high = (runs.metric_column(k) for k in ("test_macro_auc", "test_macro_auc_ci_low", "test_macro_auc_ci_high"))
    part = frame.reindex(columns=[target, stage, fraction, auc, low, high]).dropna()
    part = part[part[stage].isin(["finetune", "scratch"])]
    part = part.assign(fraction=part[fraction].astype(float))
    return (part.groupby([target, stage, "fraction"], as_index=False)
            .agg(auc=(auc, "mean"), low=(low, "mean"), high=(high, "mean"), runs=(auc, "size")))


def learning_curve_figures(curves: pd.DataFrame) -> list[go.Figure]:
    """One figure per target: fine-tuned vs scratch test macro AUC (95% CI) against the target fraction."""
    target, stage = runs.tag_column(runs.TARGET), runs.tag_column(runs.STAGE)
    figures = []
    for name, part in curves.groupby(target):
        figure = go.Figure()
        for stage_name, line in part.groupby(stage):
            line = line.sort_values("fraction")
            figure.add_trace(go.Scatter(
                x=line["fraction"], y=line["auc"], mode="lines+markers", name=stage_name,
                line=dict(color=STAGE_COLOURS.get(stage_name)),
                error_y=dict(type="data", symmetric=False, array=line["high"] - line["auc"],
                             arrayminus=line["auc"] - line["low"]),
                customdata=line["runs"], hovertemplate="fraction %{x}<br>macro AUC %{y:.3f}<br>runs %{customdata}"))
        figure.update_layout(title=f"Transfer to {name}: test macro AUC vs fraction of target training data",
                             xaxis=dict(title="fraction of target training set", type="log"),
                             yaxis=dict(title="test macro AUC (95% CI)"), template="plotly_white", width=800, height=500)
        figures.append(figure)
    return figures


# ------------------------------------------------------------------------------------------------ pages
def overview_page(frame: pd.DataFrame) -> tuple[list[go.Figure], str]:
    latest = {stage: _latest(frame, stage) for stage in runs.TRAINING_STAGES}
    latest = {stage: row for stage, row in latest.items() if row is not None}
    if not latest:
        return [], _note("No finished pretrain, finetune or scratch runs in this experiment yet.")
    table = pd.DataFrame([{
        "stage": stage, "run": row.get(runs.tag_column(runs.MLFLOW_RUN_NAME)), "target": row.get(runs.tag_column(runs.TARGET)),
        "test macro AUC": _metric(row, "test_macro_auc"), "CI low": _metric(row, "test_macro_auc_ci_low"),
        "CI high": _metric(row, "test_macro_auc_ci_high"), "ECE": _metric(row, "test_ece"),
        "ECE (temperature)": _metric(row, "test_ece_temperature"), "records": _metric(row, "test_n_records"),
    } for stage, row in latest.items()])
    figure = go.Figure()
    for stage, row in latest.items():
        keys = sorted(k for k in row.index if k.startswith("metrics.test_auc_") and not k.endswith(("_ci_low", "_ci_high"))
                      and np.isfinite(row[k]))
        figure.add_trace(go.Bar(x=[k.removeprefix("metrics.test_auc_") for k in keys], y=[row[k] for k in keys],
                                name=f"{stage} ({row.get(runs.tag_column(runs.TARGET))})",
                                marker_color=STAGE_COLOURS.get(stage)))
    figure.update_layout(title="Per-class test AUC of the latest runs", barmode="group", template="plotly_white",
                         width=1100, height=460, yaxis=dict(range=[0, 1], title="test AUC"))
    return [figure], _table(table)


def classes_page(frame: pd.DataFrame) -> tuple[list[go.Figure], str]:
    rows = []
    for stage in runs.TRAINING_STAGES:
        row = _latest(frame, stage)
        if row is None:
            continue
        try:
            predictions = tracking.load_predictions(row["run_id"], "test")
        except Exception:  # runs of older versions may lack predictions
            continue
        prevalence = predictions["labels"].mean(axis=0)
        per_class = pd.read_csv(tracking.download_artifact(row["run_id"], "evaluation/per_class.csv"))
        for j, name in enumerate(per_class["class"]):
            if np.isfinite(per_class["auc"].iloc[j]):
                rows.append({"stage": stage, "dataset": "source" if stage == "pretrain" else "target", "class": name,
                             "prevalence": float(prevalence[j]), "auc": float(per_class["auc"].iloc[j])})
    if not rows:
        return [], _note("No finished runs with per-class results yet.")
    data = pd.DataFrame(rows)
    figure = go.Figure()
    for stage, part in data.groupby("stage"):
        figure.add_trace(go.Scatter(x=part["prevalence"], y=part["auc"], mode="markers+text", text=part["class"],
                                    textposition="top center", name=f"{stage} ({part['dataset'].iloc[0]} test set)",
                                    marker=dict(size=9, color=STAGE_COLOURS.get(stage))))
    figure.update_layout(title="Per-class test AUC vs the class's prevalence (source: pretrain run; target: finetune "
                         "and scratch runs)", template="plotly_white", width=1100, height=560,
                         xaxis=dict(title="prevalence in the test set", type="log"), yaxis=dict(title="test AUC"))
    wide = data.pivot_table(index="class", columns="stage", values=["prevalence", "auc"]).reset_index()
    wide.columns = [" ".join(c).strip() for c in wide.columns]
    return [figure], _table(wide)


def matrix_section(matrix_run: pd.Series | None) -> tuple[list[go.Figure], str]:
    """The heatmaps and table of a transfer-matrix ablation (none before one has run)."""
    if matrix_run is None:
        return [], ""
    from ecgtl.stages.ablation_questions import matrix_figures

    try:
        matrix = pd.read_csv(tracking.download_artifact(matrix_run["run_id"], "ablation/transfer_matrix.csv"))
    except Exception:  # an ablation whose cells have not finished has no matrix yet
        return [], _note("The latest transfer-matrix ablation has no finished pairs yet.")
    columns = ["source_label", "target_label", "n_shared", "n_seeds", "diff", "diff_ci_low", "diff_ci_high"]
    return list(matrix_figures(matrix).values()), "<h2>Transfer matrix</h2>" + _table(matrix.reindex(columns=columns))


def explain_page(frame: pd.DataFrame) -> tuple[list[go.Figure], str]:
    from ecgtl.stages.common import EXPLANATION_EXAMPLE_FILE, LEAD_IMPORTANCE_FILE

    if not frame.empty:
        for _, row in frame.sort_values("start_time", ascending=False).iterrows():
            try:
                example = json.loads(Path(tracking.download_artifact(row["run_id"], EXPLANATION_EXAMPLE_FILE)).read_text())
                table = pd.read_csv(tracking.download_artifact(row["run_id"], LEAD_IMPORTANCE_FILE))
            except Exception:  # runs without explanations (ablation cells, explain_examples=0)
                continue
            from ecgtl.explain import Explanation, explanation_figures

            name = row.get(runs.tag_column(runs.MLFLOW_RUN_NAME))
            return list(explanation_figures(Explanation.from_dict(example))), (
                f"<h2>Explanation example of {escape(str(name))}</h2>"
                + _note("Integrated gradients of the record's logit; red pushes the class up, blue down.")
                + "<h2>Lead importance per class (share of |attribution|, test records)</h2>" + _table(table))
    return [], _note("No run with explanations yet (they need train.explain_examples > 0 and a time-domain model).")


def transfer_page(frame: pd.DataFrame, ablation_run: pd.Series | None,
                  matrix_run: pd.Series | None = None) -> tuple[list[go.Figure], str]:
    figures, text = matrix_section(matrix_run)
    curves = learning_curves(frame) if not frame.empty else pd.DataFrame()
    if not curves.empty:
        figures += learning_curve_figures(curves)
    if ablation_run is not None:
        from ecgtl.stages.ablation_results import bar_figure, classic_view, line_figure, varying_axes

        aggregated = pd.read_csv(tracking.download_artifact(ablation_run["run_id"], "ablation/aggregate.csv"))
        aggregated = classic_view(aggregated) if "init" in aggregated else aggregated  # as the ablation's figures
        pretraining = pd.read_csv(tracking.download_artifact(ablation_run["run_id"], "ablation/pretraining.csv"))
        if not aggregated.empty:
            for axis in varying_axes(aggregated):
                figures.append(line_figure(aggregated, axis, pretraining) if axis in ("target_fraction", "source_fraction", "fs")
                               else bar_figure(aggregated, axis))
            summary = Path(tracking.download_artifact(ablation_run["run_id"], "ablation/summary.md")).read_text()
            text += f"<h2>Latest ablation</h2><pre>{escape(summary)}</pre>"
    if not figures:
        return [], _note("No finetune/scratch runs or ablations with test results yet.")
    return figures, text


def calibration_page(frame: pd.DataFrame) -> tuple[list[go.Figure], str]:
    if frame.empty or runs.metric_column("test_ece") not in frame:
        return [], _note("No runs with calibration results yet.")
    columns = {runs.tag_column(runs.MLFLOW_RUN_NAME): "run", runs.tag_column(runs.STAGE): "stage",
               **{runs.metric_column(k): k for k in ("test_ece", *(f"test_ece_{m}" for m in CALIBRATION_METHODS),
                                                     "test_brier", "test_mce")}}
    table = frame.reindex(columns=list(columns)).rename(columns=columns).dropna(subset=["test_ece"])
    figures = []
    row = _latest(frame, "finetune")
    if row is not None:
        try:
            test, val = tracking.load_predictions(row["run_id"], "test"), tracking.load_predictions(row["run_id"], "val")
            from scipy.special import expit

            probabilities = {"uncalibrated": expit(test["logits"])}
            for method in ("platt", "temperature", "isotonic"):
                probabilities[method] = make_calibrator(method).fit(val["logits"], val["labels"]).predict_proba(test["logits"])
            figures.append(reliability_figure(test["labels"], probabilities,
                                              title=f"Reliability of {row.get(runs.tag_column(runs.MLFLOW_RUN_NAME))} "
                                                    "(calibrators fitted on validation, shown on test)"))
        except Exception as exc:  # predictions missing: the table still shows
            print(f"dashboard: no reliability diagram ({exc})", file=sys.stderr)
    return figures, "<h2>ECE on test, before and after calibration</h2>" + _table(table)


def tuning_page(tune_run: pd.Series | None) -> tuple[list[go.Figure], str]:
    if tune_run is None:
        return [], _note("No tuning study in this experiment yet (ecgtl tune).")
    try:
        trials = pd.read_csv(tracking.download_artifact(tune_run["run_id"], "tuning/trials.csv"))
    except Exception:
        return [], _note("The latest tuning run has no trial table yet.")
    figure = go.Figure()
    for i, (state, part) in enumerate(trials.groupby("state")):
        figure.add_trace(go.Scatter(x=part["number"], y=part["value"], mode="markers", name=state,
                                    marker=dict(size=9, color=PALETTE[i % len(PALETTE)])))
    complete = trials[trials["state"] == "COMPLETE"].sort_values("number")
    if not complete.empty:
        figure.add_trace(go.Scatter(x=complete["number"], y=complete["value"].cummax(), mode="lines",
                                    name="best so far", line=dict(color="black", dash="dot")))
    figure.update_layout(title=f"Study {tune_run.get(runs.tag_column(runs.STUDY))}: validation macro AUC per trial",
                         template="plotly_white", width=1000, height=460, xaxis=dict(title="trial"),
                         yaxis=dict(title="validation macro AUC (pruned: last reported)"))
    best = complete.sort_values("value", ascending=False).head(5)
    best = best[[c for c in best.columns if c in ("number", "value") or c.startswith("params_")]]
    return [figure] if len(trials) else [], "<h2>Best trials</h2>" + _table(best)


def registry_page() -> tuple[list[go.Figure], str]:
    models = tracking.registered_models()
    if not models:
        return [], _note("No registered models yet.")
    text = ""
    for model in models:
        rows = [{"version": v["version"], "aliases": ", ".join(v["aliases"]) or "–", "run": v["run_id"],
                 "decision": v["tags"].get(runs.promotion_tag("promote"), "–"),
                 "gain": v["tags"].get(runs.promotion_tag("gain"), "–"),
                 "reason": v["tags"].get(runs.promotion_tag("reason"), "–")} for v in model["versions"]]
        text += f"<h2>{escape(model['name'])}</h2>" + _table(pd.DataFrame(rows))
    return [], text


def build_site(out: Path, experiment: str) -> list[Path]:
    """Write the site into `out` (its pages only, by `files.write_files`; nothing else there is touched, and `out`
    is checked before the store is read). Returns the pages written."""
    check_targets(out, [name for name, _ in PAGES])
    tracking.configure(experiment)
    frame = tracking.stage_runs(runs.TRAINING_STAGES)
    pages = {
        "index.html": overview_page(frame), "classes.html": classes_page(frame),
        "transfer.html": transfer_page(frame, tracking.latest_finished_run(runs.ABLATION),
                                       tracking.latest_finished_run(runs.ABLATION, {runs.PRESET: "transfer-matrix"})),
        "calibration.html": calibration_page(frame), "explain.html": explain_page(frame),
        "tuning.html": tuning_page(tracking.latest_finished_run(runs.TUNE)), "registry.html": registry_page(),
    }
    return write_files(out, {name: figures_to_html(figures, f"ecgtl {title}", header=_nav(name, experiment) + text)
                             for (name, title), (figures, text) in zip(PAGES, (pages[n] for n, _ in PAGES),
                                                                       strict=True)})


def dashboard(out: Path, experiment: str, log: bool = True) -> list[Path]:
    """Build the site and (by default) log it as the artifacts of a `dashboard` run of the experiment."""
    written = build_site(out, experiment)
    if log:
        with tracking.stage_run(f"dashboard-{experiment}", {runs.STAGE: runs.DASHBOARD}, {"experiment": experiment}):
            tracking.log_files(written, "dashboard")  # the pages written, never the folder around them
    return written
