"""Transfer dashboard: fine-tuned vs scratch test macro AUC (with 95% CIs) against the fraction of target
training data, from the runs in an MLflow store. Writes one self-contained HTML page.

    python dashboards/transfer_dashboard.py [--experiment ecgtl] [--out transfer_dashboard.html]

The MLflow UI compares individual runs; this page shows the learning curves the study is about
(runs of the same stage, target and fraction are averaged over seeds).
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
import plotly.graph_objects as go

from ecgtl import tracking
from ecgtl.plotting import figures_to_html

COLOURS = {"finetune": "#1f77b4", "scratch": "#d62728"}


def learning_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test macro AUC and CI bounds per (target, stage, fraction) over seeds."""
    needed = ["tags.ecgtl.target", "tags.ecgtl.stage", "tags.ecgtl.fraction", "metrics.test_macro_auc",
              "metrics.test_macro_auc_ci_low", "metrics.test_macro_auc_ci_high"]
    frame = runs.reindex(columns=needed).dropna()
    frame = frame[frame["tags.ecgtl.stage"].isin(list(COLOURS))]
    frame = frame.assign(fraction=frame["tags.ecgtl.fraction"].astype(float))
    return (frame.groupby(["tags.ecgtl.target", "tags.ecgtl.stage", "fraction"], as_index=False)
            .agg(auc=("metrics.test_macro_auc", "mean"), low=("metrics.test_macro_auc_ci_low", "mean"),
                 high=("metrics.test_macro_auc_ci_high", "mean"), runs=("metrics.test_macro_auc", "size")))


def dashboard_figures(curves: pd.DataFrame) -> list[go.Figure]:
    figures = []
    for target, part in curves.groupby("tags.ecgtl.target"):
        figure = go.Figure()
        for stage, line in part.groupby("tags.ecgtl.stage"):
            line = line.sort_values("fraction")
            figure.add_trace(go.Scatter(
                x=line["fraction"], y=line["auc"], mode="lines+markers", name=stage, line=dict(color=COLOURS[stage]),
                error_y=dict(type="data", symmetric=False, array=line["high"] - line["auc"],
                             arrayminus=line["auc"] - line["low"]),
                customdata=line["runs"], hovertemplate="fraction %{x}<br>macro AUC %{y:.3f}<br>runs %{customdata}"))
        figure.update_layout(title=f"Transfer to {target}: test macro AUC vs fraction of target training data",
                             xaxis=dict(title="fraction of target training set", type="log"),
                             yaxis=dict(title="test macro AUC (95% CI)"), template="plotly_white", width=800, height=500)
        figures.append(figure)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME", tracking.DEFAULT_EXPERIMENT))
    parser.add_argument("--out", default="transfer_dashboard.html")
    args = parser.parse_args()
    tracking.configure(args.experiment)
    curves = learning_curves(tracking.stage_runs(("finetune", "scratch")))
    if curves.empty:
        raise SystemExit("no finished finetune/scratch runs with test metrics in this experiment yet")
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(figures_to_html(dashboard_figures(curves), "ecgtl transfer dashboard"))
    print(curves.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
