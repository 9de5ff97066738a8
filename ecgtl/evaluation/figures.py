"""Evaluation figures (Plotly): reliability diagrams before/after calibration, ROC curves per class."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import roc_curve

from ecgtl.evaluation.calibration import DEFAULT_BINS, reliability_bins

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
GAP_FILL = "rgba(214, 39, 40, 0.25)"


def reliability_figure(y_true: np.ndarray, probabilities: Mapping[str, np.ndarray], n_bins: int = DEFAULT_BINS,
                       title: str = "Reliability (all classes pooled)") -> go.Figure:
    """Observed frequency vs mean predicted probability per bin, one line per method, with the diagonal,
    the gap to the diagonal shaded for the first method, and a confidence histogram beneath."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.04)
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                                line=dict(color="grey", dash="dash")), row=1, col=1)
    for i, (name, p) in enumerate(probabilities.items()):
        bins = reliability_bins(y_true, p, n_bins)
        filled = bins.counts > 0
        centres = (bins.edges[:-1] + bins.edges[1:]) / 2
        colour = PALETTE[i % len(PALETTE)]
        if i == 0:  # shade the gap between observed frequency and the diagonal, bin by bin
            width = np.diff(bins.edges)
            figure.add_trace(go.Bar(x=centres[filled], y=(bins.observed - bins.mean_predicted)[filled],
                                    base=bins.mean_predicted[filled], width=width[filled], marker_color=GAP_FILL,
                                    name=f"gap ({name})", hoverinfo="skip"), row=1, col=1)
        figure.add_trace(go.Scatter(x=bins.mean_predicted[filled], y=bins.observed[filled], mode="lines+markers",
                                    name=f"{name}: ECE {bins.ece:.3f}", line=dict(color=colour),
                                    customdata=bins.counts[filled],
                                    hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>n=%{customdata}"),
                         row=1, col=1)
        figure.add_trace(go.Bar(x=centres, y=bins.counts, width=np.diff(bins.edges), marker_color=colour,
                                opacity=0.5, name=f"{name}: predictions per bin", showlegend=False), row=2, col=1)
    figure.update_layout(title=title, barmode="overlay", width=640, height=640, template="plotly_white",
                         legend=dict(x=0.02, y=0.98, bgcolor="rgba(255,255,255,0.7)"))
    figure.update_yaxes(title_text="observed frequency", range=[0, 1], row=1, col=1)
    figure.update_yaxes(title_text="count", type="log", row=2, col=1)
    figure.update_xaxes(title_text="mean predicted probability", range=[0, 1], row=2, col=1)
    return figure


def reliability_small_multiples(y_true: np.ndarray, probabilities: Mapping[str, np.ndarray], classes: Sequence[str],
                                n_bins: int = 10, columns: int = 6) -> go.Figure:
    """One reliability panel per class, every method overlaid (e.g. before and after calibration)."""
    rows = math.ceil(len(classes) / columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=list(classes), horizontal_spacing=0.03,
                           vertical_spacing=0.08)
    for j, _name in enumerate(classes):
        row, col = j // columns + 1, j % columns + 1
        figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot", width=1),
                                    showlegend=False, hoverinfo="skip"), row=row, col=col)
        for i, (method, p) in enumerate(probabilities.items()):
            bins = reliability_bins(y_true[:, j], p[:, j], n_bins)
            filled = bins.counts > 0
            figure.add_trace(go.Scatter(x=bins.mean_predicted[filled], y=bins.observed[filled], mode="lines+markers",
                                        marker=dict(size=4), line=dict(color=PALETTE[i % len(PALETTE)], width=1.5),
                                        name=method, legendgroup=method, showlegend=j == 0), row=row, col=col)
    figure.update_xaxes(range=[0, 1], showticklabels=False)
    figure.update_yaxes(range=[0, 1], showticklabels=False)
    figure.update_layout(title="Reliability per class", width=180 * columns + 80, height=190 * rows + 110,
                         template="plotly_white")
    return figure


def roc_figure(y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], aucs: Sequence[float],
               columns: int = 6) -> go.Figure:
    """ROC curve per class (small multiples), AUC in each title; classes without both labels are left empty."""
    rows = math.ceil(len(classes) / columns)
    titles = [f"{name} {auc:.3f}" if np.isfinite(auc) else f"{name} (skipped)" for name, auc in zip(classes, aucs, strict=True)]
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.08)
    for j in range(len(classes)):
        row, col = j // columns + 1, j % columns + 1
        figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot", width=1),
                                    showlegend=False, hoverinfo="skip"), row=row, col=col)
        if np.isfinite(aucs[j]):
            fpr, tpr, _ = roc_curve(y_true[:, j], scores[:, j])
            figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", line=dict(color=PALETTE[0], width=1.5),
                                        showlegend=False), row=row, col=col)
    figure.update_xaxes(range=[0, 1], showticklabels=False)
    figure.update_yaxes(range=[0, 1], showticklabels=False)
    figure.update_layout(title="ROC per class (test)", width=180 * columns + 80, height=190 * rows + 110,
                         template="plotly_white")
    return figure
