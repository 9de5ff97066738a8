"""Results of an ablation, written to its parent run (`ablation/`):

- `cells.csv`: tidy, one row per cell and seed: axes, status, run id, test macro AUC with CI, per-class AUC,
  ECE / MCE / Brier raw and after Platt, temperature and isotonic calibration (fitted on val, reported on test);
- `pretraining.csv`: the shared pretrainings with their source test macro AUC;
- `aggregate.csv`: mean, sd and count over seeds per cell, and the macro AUC averaged over seeds with a CI
  that resamples seeds and test records;
- `paired.csv`: per cell, pretrained - scratch macro AUC on the same test records (same data, split, seed),
  averaged over seeds, with a CI that resamples seeds and test records, and a one-sided p;
- `figures.html` (plotly.js embedded once) and one PNG per figure: a line plot for each numeric axis that
  varies (target fraction, source fraction, fs: pretrained and scratch with CI bands, plus the source's own
  AUC for fs), grouped bars for each categorical axis (domain, leads), ECE before/after calibration and the
  reliability diagrams of one cell per init;
- `summary.md`: each varying axis's finding in numbers.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ecgtl import runs, tracking
from ecgtl.config import reuse_key
from ecgtl.errors import EcgtlError, EvaluationError
from ecgtl.evaluation.calibration import calibrated_probabilities, make_calibrator
from ecgtl.evaluation.figures import PALETTE, reliability_figure
from ecgtl.evaluation.metrics import bootstrap_over_seeds
from ecgtl.plotting import figures_to_html, save_figure
from ecgtl.stages import ablation_questions as questions
from ecgtl.stages.ablation_pairs import TARGET_KEYS, gain_text, has_axis, mean_sd, paired_rows
from ecgtl.stages.configs import AXES, FS_AUGMENT_OFF, OWN_PRETRAINING, PRETRAINED_INITS, SOURCE_AXES
from ecgtl.stages.reuse import finished_run, pretrained_uri

NUMERIC_AXES = ("target_fraction", "source_fraction", "fs", "target_fs")
CATEGORICAL_AXES = ("domain", "leads")
INIT_COLOURS = {"pretrained": PALETTE[0], "scratch": PALETTE[1]}


def collect(cells, outcomes) -> dict:
    """Find each cell's finished run and gather metrics and test predictions (the pure tables follow)."""
    failures = {}
    for outcome in outcomes:
        if outcome.status not in ("finished", "reused") and outcome.task["kind"] == "cell":
            failures[repr(sorted(outcome.task["axes"].items(), key=str))] = outcome.error or outcome.status
    rows, predictions, pretraining = [], {}, {}
    for cell in cells:
        row = {**cell.axes, "status": "missing", "run_id": None, "error": ""}
        config = cell.finetune
        try:
            if cell.pretrain is not None:
                config = replace(config, pretrained=pretrained_uri(reuse_key(cell.pretrain)))
            run_id = finished_run(cell.stage, config)
        except EcgtlError as exc:
            run_id, row["error"] = None, str(exc)
        if cell.pretrain is not None:
            key = reuse_key(cell.pretrain)
            if key not in pretraining:
                found = finished_run(runs.PRETRAIN, cell.pretrain)
                source_axes = {a: cell.axes.get(a) for a in SOURCE_AXES}
                pretraining[key] = {**source_axes, "run_id": found,
                                    "source_test_macro_auc": tracking.run_info(found)[1].get("test_macro_auc")
                                    if found else None}
        if run_id:
            _, metrics = tracking.run_info(run_id)
            row.update(status="finished", run_id=run_id)
            row.update({k: v for k, v in metrics.items() if k.startswith("test_")})
            predictions[run_id] = {split: tracking.load_predictions(run_id, split) for split in ("test", "val")}
        else:
            row["error"] = row["error"] or failures.get(repr(sorted(cell.axes.items(), key=str)), "no finished run")
            row["status"] = "failed" if repr(sorted(cell.axes.items(), key=str)) in failures else "missing"
        rows.append(row)
    cells_frame = pd.DataFrame(rows)
    return {"cells": cells_frame, "predictions": predictions, "pretraining": pd.DataFrame(list(pretraining.values()))}


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """Axes (other than init and seed) that take more than one value among the cells."""
    axes = [a for a in (*NUMERIC_AXES, *CATEGORICAL_AXES) if a in frame]
    return [a for a in axes if frame[a].dropna().nunique() > 1]


def _group_axes(frame: pd.DataFrame, *, without: tuple[str, ...]) -> list[str]:
    return [a for a in AXES if has_axis(frame, a) and a not in without]


def aggregate(frame: pd.DataFrame, predictions: dict, n_resamples: int) -> pd.DataFrame:
    """Mean/sd/count over seeds per cell, and the seed-and-record bootstrap CI of the mean macro AUC."""
    done = frame[frame["status"] == "finished"]
    if done.empty:
        return pd.DataFrame()
    keys = _group_axes(done, without=("seed",))
    rows = []
    for values, group in done.groupby(keys, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row.update(n_seeds=len(group), auc_mean=group["test_macro_auc"].mean(),
                   auc_sd=group["test_macro_auc"].std(ddof=1) if len(group) > 1 else float("nan"))
        for column in ("test_ece", "test_ece_platt", "test_ece_temperature", "test_ece_isotonic"):
            if column in group:
                row[f"{column}_mean"] = group[column].mean()
        try:
            summary = bootstrap_over_seeds([predictions[r]["test"]["labels"] for r in group["run_id"]],
                                           [predictions[r]["test"]["logits"] for r in group["run_id"]],
                                           n_resamples=n_resamples)
            row.update(auc_ci_low=summary.low, auc_ci_high=summary.high)
        except EvaluationError as exc:
            row.update(auc_ci_low=float("nan"), auc_ci_high=float("nan"), note=str(exc))
        rows.append(row)
    return pd.DataFrame(rows)


def paired(frame: pd.DataFrame, predictions: dict, n_resamples: int) -> pd.DataFrame:
    """Paired differences on the same test records (same data, split, seed), averaged over seeds with a CI that
    resamples seeds and records: every init against `scratch` (`reference` = scratch), and, where objectives
    vary, each self-supervised objective against supervised pretraining at the same init (`reference` =
    supervised), and where starting points vary, each imported encoder against the cell's own pretraining
    (`reference` = ecgtl). Columns: the cell's axes, init, reference, n_seeds, diff, diff_ci_low/high, p_value."""
    done = frame[frame["status"] == "finished"]
    if done.empty or "scratch" not in set(done["init"]):
        return pd.DataFrame()
    target_keys = [a for a in TARGET_KEYS if has_axis(done, a)]
    source_keys = [*target_keys, *(a for a in (*SOURCE_AXES, "label_shift")
                                   if has_axis(done, a) and a not in target_keys)]
    scratch = done[done["init"] == "scratch"].set_index([*target_keys, "seed"])["run_id"]
    rows = []
    for init in [i for i in dict.fromkeys(done["init"]) if i != "scratch"]:
        part = done[done["init"] == init]
        keys = source_keys if init in PRETRAINED_INITS else target_keys
        rows += paired_rows(part, scratch, keys, target_keys, predictions, n_resamples,
                            {"init": init, "reference": "scratch"})
    if "objective" in done and done["objective"].dropna().nunique() > 1:
        pretrained = done[done["init"].isin(PRETRAINED_INITS)]
        match = [*target_keys, "source_fraction", "init"]
        supervised = pretrained[pretrained["objective"] == "supervised"].set_index([*match, "seed"])["run_id"]
        for objective in [o for o in dict.fromkeys(pretrained["objective"]) if o != "supervised"]:
            part = pretrained[pretrained["objective"] == objective]
            rows += [{**row, "objective": objective} for row in paired_rows(
                part, supervised, match, match, predictions, n_resamples,
                {"reference": "supervised"})]
    if has_axis(done, "starting_point") and done["starting_point"].dropna().nunique() > 1:
        pretrained = done[done["init"].isin(PRETRAINED_INITS)]
        match = [*target_keys, "init"]
        own = pretrained[pretrained["starting_point"] == OWN_PRETRAINING].set_index([*match, "seed"])["run_id"]
        for start in [p for p in dict.fromkeys(pretrained["starting_point"]) if p != OWN_PRETRAINING]:
            part = pretrained[pretrained["starting_point"] == start]
            rows += [{**row, "starting_point": start} for row in paired_rows(
                part, own, match, match, predictions, n_resamples, {"reference": OWN_PRETRAINING})]
    return pd.DataFrame(rows)


# Axis values the seed study's comparison keeps (the others are compared with them in ablation_questions.py).
CLASSIC_VALUES = {"objective": "supervised", "label_shift": "none", "fs_augment": FS_AUGMENT_OFF,
                  "starting_point": OWN_PRETRAINING}


def classic_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The seed study's comparison: supervised pretraining (or no objective axis) fine-tuned vs scratch, without
    label-shift correction or rate augmentation, on the first source and target of a transfer matrix."""
    keep = frame["init"].isin(["pretrained", "scratch"])
    for axis, value in CLASSIC_VALUES.items():
        if axis in frame:
            keep &= frame[axis].isna() | (frame[axis] == value)
    for axis in ("source", "target"):
        if axis in frame and frame[axis].dropna().nunique() > 1:
            keep &= frame[axis].isna() | (frame[axis] == frame[axis].dropna().iloc[0])
    if "reference" in frame:
        keep &= frame["reference"] == "scratch"
    return frame[keep]


def _pair_of(gains: pd.DataFrame, row: pd.Series, reference: str) -> pd.DataFrame:
    """The paired row of an aggregated cell against `reference` (empty when there is none)."""
    if gains.empty:
        return gains
    chosen = gains[(gains["target_fraction"] == row["target_fraction"]) & (gains["init"] == row["init"])
                   & (gains["reference"] == reference)]
    return chosen[chosen["objective"] == row["objective"]] if pd.notna(row.get("objective")) else chosen


def objectives_markdown(aggregated: pd.DataFrame, gains: pd.DataFrame) -> list[str]:
    """Per target fraction: each objective and init, its AUC over seeds and its paired differences."""
    if aggregated.empty or "objective" not in aggregated or aggregated["objective"].dropna().nunique() < 2:
        return []
    lines = ["", "## pretraining objectives and baselines", "",
             "| target fraction | objective | init | AUC (mean ± sd) | − scratch [95% CI] | − supervised [95% CI] |",
             "|---|---|---|---|---|---|"]
    for fraction in sorted(aggregated["target_fraction"].dropna().unique(), reverse=True):
        part = aggregated[aggregated["target_fraction"] == fraction]
        for _, row in part.sort_values(["init", "objective"], na_position="last").iterrows():
            objective = row["objective"] if pd.notna(row.get("objective")) else "–"
            lines.append(f"| {fraction:g} | {objective} | {row['init']} | {mean_sd(pd.DataFrame([row]))} | "
                         f"{gain_text(_pair_of(gains, row, 'scratch'))} | {gain_text(_pair_of(gains, row, 'supervised'))} |")
    return lines


# ------------------------------------------------------------------------------------------------ figures
def _other_axes_fixed(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Rows where every other varying axis is at its most common value (one line per init for `axis`)."""
    keep = pd.Series(True, index=frame.index)
    for other in varying_axes(frame):
        if other == axis:
            continue
        values = frame[other].dropna()
        if not values.empty:
            keep &= frame[other].isna() | (frame[other] == values.mode().iloc[0])
    return frame[keep]


def line_figure(aggregated: pd.DataFrame, axis: str, pretraining: pd.DataFrame) -> go.Figure:
    part = _other_axes_fixed(aggregated, axis)
    figure = go.Figure()
    for init, line in part.groupby("init"):
        if axis == "source_fraction" and init == "scratch":
            continue  # drawn as a reference band below
        line = line.sort_values(axis)
        colour = INIT_COLOURS.get(init, PALETTE[2])
        figure.add_trace(go.Scatter(x=list(line[axis]) + list(line[axis])[::-1],
                                    y=list(line["auc_ci_high"]) + list(line["auc_ci_low"])[::-1], fill="toself",
                                    mode="lines", line=dict(width=0), fillcolor=_rgba(colour, 0.18), hoverinfo="skip",
                                    showlegend=False))
        figure.add_trace(go.Scatter(x=line[axis], y=line["auc_mean"], mode="lines+markers", name=init,
                                    line=dict(color=colour), customdata=line["n_seeds"],
                                    hovertemplate=f"{axis} %{{x}}<br>macro AUC %{{y:.3f}}<br>seeds %{{customdata}}"))
    if axis == "source_fraction":
        reference = part[part["init"] == "scratch"]
        if not reference.empty:
            auc, low, high = reference["auc_mean"].mean(), reference["auc_ci_low"].mean(), reference["auc_ci_high"].mean()
            xs = sorted(part[axis].dropna().unique())
            figure.add_trace(go.Scatter(x=xs + xs[::-1], y=[high] * len(xs) + [low] * len(xs), fill="toself",
                                        mode="lines", line=dict(width=0), fillcolor=_rgba(INIT_COLOURS["scratch"], 0.15),
                                        hoverinfo="skip", showlegend=False))
            figure.add_trace(go.Scatter(x=xs, y=[auc] * len(xs), mode="lines", name="scratch (no source)",
                                        line=dict(color=INIT_COLOURS["scratch"], dash="dash")))
    if axis == "fs" and not pretraining.empty and "fs" in pretraining:
        source = _other_axes_fixed(pretraining.dropna(subset=["source_test_macro_auc"]), "fs").sort_values("fs")
        figure.add_trace(go.Scatter(x=source["fs"], y=source["source_test_macro_auc"], mode="lines+markers",
                                    name="source (pretraining test set)", line=dict(color=PALETTE[2], dash="dot")))
    figure.update_layout(title=f"Test macro AUC vs {axis.replace('_', ' ')} (mean over seeds, 95% CI over seeds "
                         "and test records)", template="plotly_white", width=820, height=480,
                         xaxis=dict(title=axis.replace("_", " "), type="log" if axis != "fs" else "linear",
                                    tickvals=sorted(part[axis].dropna().unique())),
                         yaxis=dict(title="test macro AUC"))
    return figure


def bar_figure(aggregated: pd.DataFrame, axis: str) -> go.Figure:
    part = _other_axes_fixed(aggregated, axis)
    order = list(dict.fromkeys(part[axis]))
    figure = go.Figure()
    for init, bars in part.groupby("init"):
        bars = bars.set_index(axis).reindex(order)
        figure.add_trace(go.Bar(x=order, y=bars["auc_mean"], name=init, marker_color=INIT_COLOURS.get(init, PALETTE[2]),
                                error_y=dict(type="data", symmetric=False, array=bars["auc_ci_high"] - bars["auc_mean"],
                                             arrayminus=bars["auc_mean"] - bars["auc_ci_low"])))
    figure.update_layout(title=f"Test macro AUC by {axis} (mean over seeds, 95% CI)", barmode="group",
                         template="plotly_white", width=820, height=480, yaxis=dict(title="test macro AUC", range=[0.4, 1]))
    return figure


def calibration_figures(frame: pd.DataFrame, predictions: dict) -> list[go.Figure]:
    done = frame[frame["status"] == "finished"]
    if done.empty or "test_ece" not in done:
        return []
    methods = ["test_ece", *(f"test_ece_{m}" for m in ("platt", "temperature", "isotonic"))]
    means = done.groupby("init")[[m for m in methods if m in done]].mean()
    bars = go.Figure()
    for init, values in means.iterrows():
        bars.add_trace(go.Bar(x=["uncalibrated", "Platt", "temperature", "isotonic"][:len(values)], y=values.to_numpy(),
                              name=init, marker_color=INIT_COLOURS.get(init, PALETTE[2])))
    bars.update_layout(title="ECE on test before and after calibration fitted on validation (mean over cells)",
                       barmode="group", template="plotly_white", width=820, height=440, yaxis=dict(title="ECE (pooled)"))
    figures = [bars]
    for init, group in done.groupby("init"):
        run_id = group.sort_values(list(group.columns.intersection(["target_fraction", "seed"]))).iloc[0]["run_id"]
        test, val = predictions[run_id]["test"], predictions[run_id]["val"]
        probabilities = {"uncalibrated": calibrated_probabilities(test["logits"])}
        for method in ("platt", "temperature", "isotonic"):
            probabilities[method] = make_calibrator(method).fit(val["logits"], val["labels"]).predict_proba(test["logits"])
        figures.append(reliability_figure(test["labels"], probabilities,
                                          title=f"Reliability, {init} (one cell: {_cell_name(group.iloc[0])})"))
    return figures


def _cell_name(row) -> str:
    return ", ".join(f"{a}={row[a]}" for a in ("target_fraction", "fs", "domain", "leads", "seed")
                     if a in row and row[a] is not None and not (isinstance(row[a], float) and math.isnan(row[a])))


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


# ------------------------------------------------------------------------------------------------ summary
def summary_markdown(frame: pd.DataFrame, aggregated: pd.DataFrame, gains: pd.DataFrame, preset: str, *,
                     all_cells: pd.DataFrame | None = None) -> str:
    """`frame`: the cells of the seed study's comparison (`classic_view`); `all_cells`: every cell (the count)."""
    every = frame if all_cells is None else all_cells
    finished = int((every["status"] == "finished").sum())
    lines = [f"# Ablation `{preset}`", "", f"{finished} of {len(every)} cells finished."]
    failed = every[every["status"] != "finished"]
    if not failed.empty:
        lines.append(f"{len(failed)} did not ({'; '.join(sorted(set(failed['error'].astype(str))))[:500]}): re-run the "
                     "same command to retry them.")
    for axis in varying_axes(frame) or ["target_fraction"]:
        if aggregated.empty or axis not in aggregated:
            continue
        lines += ["", f"## {axis.replace('_', ' ')}", "",
                  "| value | pretrained AUC (mean ± sd) | scratch AUC (mean ± sd) | pretrained − scratch [95% CI] | p |",
                  "|---|---|---|---|---|"]
        part = _other_axes_fixed(aggregated, axis)
        gain_part = _other_axes_fixed(gains, axis) if not gains.empty and axis in gains else pd.DataFrame()
        for value in sorted(part[axis].dropna().unique(), key=lambda v: (isinstance(v, str), v)):
            pre = part[(part[axis] == value) & (part["init"] == "pretrained")]
            scr = part[(part["init"] == "scratch") & ((part[axis] == value) | part[axis].isna())]
            gain = gain_part[gain_part[axis] == value] if not gain_part.empty else pd.DataFrame()
            lines.append(f"| {value} | {mean_sd(pre)} | {mean_sd(scr)} | {gain_text(gain)} | "
                         f"{gain['p_value'].iloc[0]:.3f} |" if not gain.empty and "p_value" in gain else
                         f"| {value} | {mean_sd(pre)} | {mean_sd(scr)} | {gain_text(gain)} | – |")
        if not gain_part.empty and "diff" in gain_part:
            best = gain_part.loc[gain_part["diff"].idxmax()]
            lines += ["", f"Finding: the transfer gain is largest at {axis} = {best[axis]} "
                      f"({best['diff']:+.3f} [{best['diff_ci_low']:+.3f}, {best['diff_ci_high']:+.3f}]); "
                      f"over the {axis.replace('_', ' ')} values it ranges from {gain_part['diff'].min():+.3f} to "
                      f"{gain_part['diff'].max():+.3f}."]
    if "test_ece" in frame and frame["status"].eq("finished").any():
        done = frame[frame["status"] == "finished"]
        lines += ["", "## calibration (test, fitted on validation)", "", "| init | ECE raw | Platt | temperature | isotonic | Brier raw |",
                  "|---|---|---|---|---|---|"]
        for init, group in done.groupby("init"):
            cells = [group.get(c, pd.Series(dtype=float)).mean() for c in
                     ("test_ece", "test_ece_platt", "test_ece_temperature", "test_ece_isotonic", "test_brier")]
            lines.append(f"| {init} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    lines += ["", "Synthetic data can show whether the platform measures these effects correctly and how a model "
              "reacts to the input it is given; it cannot say how large the effects are on real ECGs."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ logging
def build_figures(frame: pd.DataFrame, aggregated: pd.DataFrame, pretraining: pd.DataFrame, predictions: dict) -> dict:
    figures = {}
    if aggregated.empty:
        return figures
    for axis in varying_axes(frame):
        if axis in NUMERIC_AXES:
            figures[f"auc_vs_{axis}"] = line_figure(aggregated, axis, pretraining)
        else:
            figures[f"auc_by_{axis}"] = bar_figure(aggregated, axis)
    for i, figure in enumerate(calibration_figures(frame, predictions)):
        figures["ece_before_after" if i == 0 else f"reliability_{i}"] = figure
    return figures


def log_results(results: dict, config) -> None:
    """Tables, figures and summary to the active (parent) run; also kept in `results`."""
    n_resamples = config.sizing().n_bootstrap
    frame, predictions = results["cells"], results["predictions"]
    results["aggregate"] = aggregate(frame, predictions, n_resamples)
    results["paired"] = paired(frame, predictions, n_resamples)
    classic = {name: classic_view(results[name]) if not results[name].empty else results[name]
               for name in ("aggregate", "paired")}
    results["figures"] = build_figures(classic_view(frame), classic["aggregate"], results["pretraining"], predictions)
    results["summary"] = summary_markdown(classic_view(frame), classic["aggregate"], classic["paired"], config.preset,
                                          all_cells=frame)
    results["contrasts"] = questions.contrasts(frame, predictions, n_resamples)
    results["matrix"] = questions.transfer_matrix(frame, results["paired"], config.sizing())
    results["figures"].update(questions.matrix_figures(results["matrix"]))
    extra = objectives_markdown(results["aggregate"], results["paired"]) + questions.questions_markdown(
        results["aggregate"], results["paired"], results["contrasts"], results["matrix"])
    if extra:
        results["summary"] += "\n".join(extra) + "\n"
    print(results["summary"], file=sys.stderr)
    tracking.log_epoch(0, {"cells": len(frame), "cells_finished": int((frame["status"] == "finished").sum())})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame.to_csv(folder / "cells.csv", index=False)
        results["pretraining"].to_csv(folder / "pretraining.csv", index=False)
        results["aggregate"].to_csv(folder / "aggregate.csv", index=False)
        results["paired"].to_csv(folder / "paired.csv", index=False)
        for name in ("contrasts", "matrix"):
            if not results[name].empty:
                results[name].to_csv(folder / f"{'transfer_matrix' if name == 'matrix' else name}.csv", index=False)
        (folder / "summary.md").write_text(results["summary"])
        if results["figures"]:
            (folder / "figures.html").write_text(figures_to_html(list(results["figures"].values()), "ecgtl ablation"),
                                                 encoding="utf-8")
            for name, figure in results["figures"].items():
                try:
                    save_figure(figure, folder / f"{name}.png", scale=1.5)
                except EcgtlError as exc:  # PNG needs kaleido + Chromium; the HTML is always there
                    (folder / "png_skipped.txt").write_text(str(exc))
                    break
        tracking.log_artifacts(folder, "ablation")
    tracking.set_tags({runs.TAG + "summary": results["summary"][:4000]})
