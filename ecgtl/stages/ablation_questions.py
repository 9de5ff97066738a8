"""The seed study's open questions as ablation results (written beside `ablation_results.py`'s tables):

- `contrasts.csv`: paired differences of an axis value against its reference value on the same test records
  (same target, fraction, seed): `label_shift` against `none`, `fs_augment` against `off`. Columns: the cell's
  axes, `axis`, `reference`, `n_seeds`, `diff` (macro AUC), CI, p, and the mean change of ECE, Brier and
  macro F1 over the paired seeds (`d_ece`, `d_brier`, `d_f1`);
- `transfer_matrix.csv`: per source -> target pair, the classes both have positives for (`n_shared`) and the
  pretrained - scratch gain with its CI (from `paired.csv`); heatmaps of the gain and of its lower bound;
- markdown sections for `summary.md`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgtl.data.cache import prepare
from ecgtl.data.prepare_config import PrepareConfig
from ecgtl.data.spec import parse_spec
from ecgtl.stages.ablation_pairs import TARGET_KEYS, gain_text, has_axis, mean_sd, paired_rows
from ecgtl.stages.configs import FS_AUGMENT_OFF, PRETRAINED_INITS

CONTRASTS = {"label_shift": "none", "fs_augment": FS_AUGMENT_OFF}
CHANGES = {"d_ece": "test_ece", "d_ece_temperature": "test_ece_temperature", "d_brier": "test_brier",
           "d_f1": "test_macro_f1"}


def contrasts(frame: pd.DataFrame, predictions: dict, n_resamples: int) -> pd.DataFrame:
    """Each non-reference value of a contrasted axis against the reference value, pretrained cells only."""
    done = frame[(frame["status"] == "finished") & frame["init"].isin(PRETRAINED_INITS)]
    rows = []
    for axis, reference_value in CONTRASTS.items():
        if not has_axis(done, axis) or done[axis].nunique() < 2:
            continue
        others = [a for a in (*TARGET_KEYS, "source", "source_fraction", "objective", "init", *CONTRASTS)
                  if a != axis and has_axis(done, a)]
        reference = done[done[axis] == reference_value].set_index([*others, "seed"])
        for value in [v for v in dict.fromkeys(done[axis]) if v != reference_value]:
            part = done[done[axis] == value]
            found = paired_rows(part, reference["run_id"], [*others, axis], others, predictions, n_resamples,
                                 {"axis": axis, "reference": reference_value})
            for row in found:
                mine = part[np.logical_and.reduce([part[a] == row[a] for a in [*others, axis]])].set_index("seed")
                theirs = reference.xs(tuple(row[a] for a in others), level=others) if others else reference
                seeds = mine.index.intersection(theirs.index)
                for name, column in CHANGES.items():
                    if column in mine and len(seeds):
                        row[name] = float((mine.loc[seeds, column] - theirs.loc[seeds, column]).mean())
            rows += found
    return pd.DataFrame(rows)


def shared_classes(source: str, target: str, *, fs: float, label_set: str) -> int:
    """Classes of `label_set` with positive records in both the source's and the target's training split (read
    from the caches the cells used)."""
    positives = []
    for spec in (source, target):
        prepared = prepare(PrepareConfig(spec=spec, fs=fs, label_set=label_set), progress=False)
        positives.append(prepared.split("train").labels.sum(axis=0) > 0)
    return int(np.sum(positives[0] & positives[1]))


def transfer_matrix(frame: pd.DataFrame, gains: pd.DataFrame, size) -> pd.DataFrame:
    """One row per source -> target pair of a grid where both vary: shared classes and the paired gain."""
    if gains.empty or not (has_axis(gains, "source") and has_axis(gains, "target")):
        return pd.DataFrame()
    pretrained = gains[(gains["init"] == "pretrained") & (gains["reference"] == "scratch")]
    rows = []
    for (source, target), part in pretrained.groupby(["source", "target"]):
        row = part.iloc[0]
        fs = float(row["fs"]) if "fs" in part else 100.0
        rows.append({"source": source, "target": target, "source_label": parse_spec(source).label,
                     "target_label": parse_spec(target).label,
                     "n_shared": shared_classes(source, target, fs=fs, label_set=size.label_set),
                     **{k: row.get(k, np.nan) for k in ("n_seeds", "diff", "diff_ci_low", "diff_ci_high", "p_value")}})
    return pd.DataFrame(rows)


def matrix_figures(matrix: pd.DataFrame) -> dict[str, go.Figure]:
    """Heatmaps source x target: the transfer gain and its CI's lower bound (above 0: the gain is credible)."""
    if matrix.empty:
        return {}
    figures = {}
    for column, title in (("diff", "pretrained − scratch macro AUC"), ("diff_ci_low", "lower 95% bound of the gain")):
        table = matrix.pivot(index="source_label", columns="target_label", values=column)
        text = [[f"{v:+.3f}" if np.isfinite(v) else "–" for v in row] for row in table.to_numpy(dtype=float)]
        limit = float(np.nanmax(np.abs(table.to_numpy(dtype=float)))) if np.isfinite(table.to_numpy(dtype=float)).any() else 1.0
        figure = go.Figure(go.Heatmap(z=table.to_numpy(dtype=float), x=list(table.columns), y=list(table.index),
                                      text=text, texttemplate="%{text}", colorscale="RdBu", zmid=0,
                                      zmin=-limit, zmax=limit, colorbar=dict(title="Δ AUC")))
        figure.update_layout(title=f"Transfer matrix: {title} (paired, mean over seeds)", template="plotly_white",
                             width=720, height=520, xaxis=dict(title="target"), yaxis=dict(title="source"))
        figures[f"transfer_matrix_{column}"] = figure
    return figures


def questions_markdown(aggregated: pd.DataFrame, gains: pd.DataFrame, contrast: pd.DataFrame,
                       matrix: pd.DataFrame) -> list[str]:
    """The label-shift, rate-shift and transfer-matrix sections of `summary.md` (none where the grid has none)."""
    lines: list[str] = []
    if not contrast.empty and (contrast["axis"] == "label_shift").any():
        lines += ["", "## label shift (against no correction, same cells and seeds)", "",
                  "| target fraction | label_shift | AUC (mean ± sd) | Δ AUC [95% CI] | Δ ECE raw | Δ ECE temperature | "
                  "Δ Brier | Δ macro F1 |", "|---|---|---|---|---|---|---|---|"]
        part = contrast[contrast["axis"] == "label_shift"]
        for _, row in part.sort_values(["target_fraction", "label_shift"], ascending=[False, True]).iterrows():
            cell = aggregated[(aggregated["target_fraction"] == row["target_fraction"])
                              & (aggregated["label_shift"] == row["label_shift"]) & (aggregated["init"] == row["init"])]
            lines.append(f"| {row['target_fraction']:g} | {row['label_shift']} | {mean_sd(cell)} | "
                         f"{gain_text(pd.DataFrame([row]))} | " + " | ".join(
                             f"{row.get(k, np.nan):+.4f}" for k in ("d_ece", "d_ece_temperature", "d_brier", "d_f1"))
                         + " |")
        lines += ["", "In fine-tuning, `prior` and `em` move the reused head's bias before training and `reweight` "
                  "changes the loss, so all three can move the AUC (only a bias shift of fixed outputs, as "
                  "`ecgtl evaluate --label_shift` applies, cannot). Calibrated columns refit on the target's "
                  "validation split."]
    if not contrast.empty and (contrast["axis"] == "fs_augment").any():
        lines += ["", "## sampling-rate shift (records arriving at target_fs, model at its own rate)", "",
                  "| target_fs | fs_augment | AUC (mean ± sd) | augmented − not [95% CI] | pretrained − scratch [95% CI] |",
                  "|---|---|---|---|---|"]
        for target_fs in sorted(aggregated["target_fs"].dropna().unique()):
            for augment in dict.fromkeys(aggregated["fs_augment"].dropna()):
                cell = aggregated[(aggregated["target_fs"] == target_fs) & (aggregated["fs_augment"] == augment)
                                  & (aggregated["init"] == "pretrained")]
                vs_off = contrast[(contrast["axis"] == "fs_augment") & (contrast["target_fs"] == target_fs)
                                  & (contrast["fs_augment"] == augment)]
                vs_scratch = gains[(gains["target_fs"] == target_fs) & (gains["fs_augment"] == augment)
                                   & (gains["init"] == "pretrained") & (gains["reference"] == "scratch")]
                lines.append(f"| {target_fs:g} | {augment} | {mean_sd(cell)} | {gain_text(vs_off)} | "
                             f"{gain_text(vs_scratch)} |")
            scratch = aggregated[(aggregated["target_fs"] == target_fs) & (aggregated["init"] == "scratch")]
            lines.append(f"| {target_fs:g} | (scratch) | {mean_sd(scratch)} | – | – |")
    if not matrix.empty:
        lines += ["", "## transfer matrix (pretrained − scratch macro AUC, paired, [95% CI])", "",
                  "| source \\ target | " + " | ".join(dict.fromkeys(matrix["target_label"])) + " |",
                  "|---|" + "---|" * matrix["target_label"].nunique()]
        for source, part in matrix.groupby("source_label", sort=False):
            cells = []
            for target in dict.fromkeys(matrix["target_label"]):
                row = part[part["target_label"] == target]
                cells.append(f"{gain_text(row)} ({int(row['n_shared'].iloc[0])} classes)" if not row.empty else "–")
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines
