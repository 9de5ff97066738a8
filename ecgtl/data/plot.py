"""12-lead ECGs drawn the way clinicians read them: 3x4 layout plus a lead II rhythm strip on grid paper.

Paper conventions: 25 mm/s and 10 mm/mV, minor grid 1 mm (0.04 s, 0.1 mV), major grid 5 mm (0.2 s, 0.5 mV).
The y axis is scaled against x so that 1 mV is drawn as long as 0.4 s, which keeps those proportions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from ecgtl.data.cinc import CINC_GAIN_ERRATA
from ecgtl.data.records import Record, read_record
from ecgtl.data.sources import open_source
from ecgtl.errors import EcgtlError
from ecgtl.inputs import STANDARD_LEADS
from ecgtl.plotting import save_figure

LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
ROW_SPACING_MV = 3.0
PAPER = "#fff5f5"
MINOR = "#f7c6c6"
MAJOR = "#e88e8e"
MM_PER_S = 25.0
MM_PER_MV = 10.0


def _paper_axes(figure: go.Figure, x_range: tuple[float, float], y_range: tuple[float, float],
                px_per_mm: float) -> None:
    width_mm = (x_range[1] - x_range[0]) * MM_PER_S
    height_mm = (y_range[1] - y_range[0]) * MM_PER_MV
    figure.update_layout(
        width=int(width_mm * px_per_mm) + 40, height=int(height_mm * px_per_mm) + 70,
        plot_bgcolor=PAPER, paper_bgcolor="white", showlegend=False, margin=dict(l=20, r=20, t=50, b=20),
    )
    grid = dict(showgrid=True, gridcolor=MAJOR, gridwidth=1, zeroline=False, showticklabels=False, ticks="")
    figure.update_xaxes(range=x_range, dtick=0.2, minor=dict(dtick=0.04, showgrid=True, gridcolor=MINOR), **grid)
    figure.update_yaxes(range=y_range, dtick=0.5, minor=dict(dtick=0.1, showgrid=True, gridcolor=MINOR),
                        scaleanchor="x", scaleratio=MM_PER_MV / MM_PER_S, **grid)


def ecg_figure(signal: np.ndarray, fs: float, title: str = "", px_per_mm: float = 4.0) -> go.Figure:
    """A standard 12-lead page: 3 rows x 4 columns of 2.5 s, and a 10 s lead II rhythm strip beneath."""
    signal = np.asarray(signal, dtype=float)
    n = signal.shape[1]
    seconds = n / fs
    column_s = min(2.5, seconds / 4)
    time = np.arange(n) / fs
    figure = go.Figure()
    for row, leads in enumerate(LAYOUT_3X4):
        offset = -row * ROW_SPACING_MV
        for column, lead in enumerate(leads):
            start = column * column_s
            window = (time >= start) & (time < start + column_s)
            trace = signal[STANDARD_LEADS.index(lead), window]
            figure.add_trace(go.Scatter(x=time[window], y=trace + offset, mode="lines", name=lead,
                                        line=dict(color="black", width=1), hoverinfo="skip"))
            figure.add_annotation(x=start + 0.05, y=offset + 1.1, text=lead, showarrow=False, xanchor="left",
                                  font=dict(size=12, color="black"))
    strip_offset = -3 * ROW_SPACING_MV
    lead_ii = signal[STANDARD_LEADS.index("II")]
    figure.add_trace(go.Scatter(x=time, y=lead_ii + strip_offset, mode="lines", name="II (rhythm)",
                                line=dict(color="black", width=1), hoverinfo="skip"))
    figure.add_annotation(x=0.05, y=strip_offset + 1.1, text="II", showarrow=False, xanchor="left")
    figure.update_layout(title=dict(text=f"{title}  ·  25 mm/s, 10 mm/mV, {fs:g} Hz", x=0.01))
    _paper_axes(figure, (0, 4 * column_s if seconds >= 10 else seconds), (strip_offset - 1.6, 1.6), px_per_mm)
    return figure


def beat_window(signal: np.ndarray, fs: float, width_s: float = 1.2) -> np.ndarray:
    """A window of `width_s` around an R peak near the middle (peak of summed slope over all leads)."""
    slope = np.abs(np.diff(signal, axis=1)).sum(axis=0)
    n, half = signal.shape[1], int(width_s * fs / 2)
    middle = slope[n // 4: 3 * n // 4]
    peak = n // 4 + int(np.argmax(middle))
    start = int(np.clip(peak - int(0.4 * width_s * fs), 0, n - 2 * half))
    return signal[:, start:start + 2 * half]


def gallery_figure(examples: list[tuple[str, np.ndarray]], fs: float, px_per_mm: float = 3.0) -> go.Figure:
    """One row per class: a beat of each of the 12 leads side by side (I ... V6), on grid paper."""
    figure = go.Figure()
    width_s = 1.2
    for row, (name, signal) in enumerate(examples):
        window = beat_window(signal, fs, width_s)
        offset = -row * ROW_SPACING_MV
        for column, lead in enumerate(STANDARD_LEADS):
            x = column * width_s + np.arange(window.shape[1]) / fs
            figure.add_trace(go.Scatter(x=x, y=window[column] + offset, mode="lines", line=dict(color="black", width=1),
                                        hoverinfo="skip"))
            if row == 0:
                figure.add_annotation(x=column * width_s + 0.6, y=1.75, text=lead, showarrow=False)
        figure.add_annotation(x=0.03, y=offset + 1.2, text=f"<b>{name}</b>", showarrow=False, xanchor="left",
                              bgcolor="rgba(255,255,255,0.8)")
    figure.update_layout(title=dict(text="One example per class  ·  25 mm/s, 10 mm/mV", x=0.01))
    _paper_axes(figure, (0, 12 * width_s), (-(len(examples) - 1) * ROW_SPACING_MV - 1.6, 2.0), px_per_mm)
    return figure


def gallery_examples(source, label_set: str = "shared18") -> list[tuple[str, Record]]:
    """For each class, the first record carrying it, preferring records with that label alone."""
    labels, classes = source.label_matrix(label_set)
    examples = []
    for j, name in enumerate(classes):
        having = np.flatnonzero(labels[:, j])
        if not len(having):
            continue
        alone = having[labels[having].sum(axis=1) == 1]
        row = int(alone[0] if len(alone) else having[0])
        record = read_record(source.index["header_path"].iloc[row], record_id=source.index["record_id"].iloc[row],
                             gain_errata=source.gain_errata)
        examples.append((f"{name} ({record.record_id})", record))
    if not examples:
        raise EcgtlError(f"no record of {source.root} carries a class of {label_set}")
    return examples


def plot_source(source_text: str, out: Path, record_id: str | None = None, gallery: bool = False,
                label_set: str = "shared18", fs: float = 500) -> Path:
    """Plot one record (a `.hea` file, or `--record` of a folder/spec) or a class gallery to `out`."""
    if source_text.endswith(".hea") and Path(source_text).is_file():
        record = read_record(source_text, gain_errata=CINC_GAIN_ERRATA)
        return save_figure(ecg_figure(record.signal, record.fs, _title(record)), out)
    source = open_source(source_text, fs=fs)
    if gallery:
        examples = gallery_examples(source, label_set)
        rates = {record.fs for _, record in examples}
        figure = gallery_figure([(name, record.signal) for name, record in examples], rates.pop())
        return save_figure(figure, out)
    if record_id is None:
        raise EcgtlError("--record ID is needed to plot one record of a folder (or use --gallery)")
    rows = np.flatnonzero(source.index["record_id"].astype(str) == str(record_id))
    if not len(rows):
        raise EcgtlError(f"record {record_id!r} is not in {source.root}")
    row = int(rows[0])
    record = read_record(source.index["header_path"].iloc[row], record_id=str(record_id), gain_errata=source.gain_errata)
    return save_figure(ecg_figure(record.signal, record.fs, _title(record)), out)


def _title(record: Record) -> str:
    codes = ", ".join(record.codes) if record.codes else "no codes"
    return f"{record.record_id} · {codes}"
