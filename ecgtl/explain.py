"""Which leads and which parts of a beat drive a prediction: integrated gradients through the input
pipeline, per record and per class.

The attribution is of the *record's* logit as the pipeline computes it: the record at the model's rate (and,
under `scaling=record`, standardised), cut into the pipeline's sliding windows, each lead-scaled and passed
through the model, the window logits aggregated by max or mean (`RecordLogit` is that computation as one torch
module). Integrated gradients (Sundararajan et al. 2017) attribute it to every sample of every lead of the
whole record, with Captum's default quadrature (Gauss-Legendre, `DEFAULT_STEPS` points) and a flat 0 mV
baseline (an isoelectric line). By IG's completeness, a record's attributions sum to its logit minus the
baseline's (`convergence_delta`).

Bounded like inference (`InputPipeline.predict_logits`): the gradient of a max (or mean) over windows is the
gradient of the arg-max window (of every window, over their number), so `integrated_gradients` evaluates
windows, never whole records, at most `MAX_WINDOWS_PER_PASS` per forward pass (IG steps and windows batched
together within that bound): an hour-long record costs more passes, not more memory. The result is Captum's
`IntegratedGradients` over `RecordLogit` to float rounding (tested).

- `lead_importance`: per lead, the share of the summed absolute attribution (the 12 shares sum to 1);
- `explain_record` -> `Explanation`; `explanation_figures` draws it on `data/plot.py`'s 12-lead page as a heat
  overlay (red: evidence for the class, blue: against) with per-lead importance bars beneath;
- `class_examples` + `dataset_lead_importance`: per class, the mean lead shares over records positive for it
  (the table the manual compares with the `leads` ablation); `explanations_page` draws each class's first.
Only the time domain is attributed (an FFT input has no per-sample meaning to draw). A record shorter than one
window is refused, as `ecgtl predict` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import nn

from ecgtl.data.dataset import window_starts
from ecgtl.data.plot import LAYOUT_3X4, ROW_SPACING_MV, ecg_figure
from ecgtl.data.signal import standardise_records
from ecgtl.errors import EcgtlError
from ecgtl.inputs import STANDARD_LEADS
from ecgtl.pipeline import MAX_WINDOWS_PER_PASS, InputPipeline, usable_windows
from ecgtl.plotting import escape, figures_to_html

DEFAULT_STEPS = 32  # IG's Riemann steps; each explanation reports its completeness gap (`convergence_delta`)
REPORT_STEPS = 16  # on every evaluation report: illustrative examples at half the cost


class RecordLogit(nn.Module):
    """record [batch, 12, samples] in mV at the model's rate -> the pipeline's aggregated logit of `class_index`."""

    def __init__(self, model: nn.Module, pipeline: InputPipeline, class_index: int, valid_samples: int) -> None:
        super().__init__()
        if pipeline.domain != "time":
            raise EcgtlError(f"explain attributes time-domain inputs; this model reads {pipeline.domain}")
        if pipeline.scaler is None:
            raise EcgtlError("the model's pipeline has no fitted scaler")
        self.model, self.pipeline, self.class_index = model.eval(), pipeline, class_index
        device = next(model.parameters()).device
        self.index = torch.as_tensor(pipeline.lead_index, device=device)
        self.mean = torch.as_tensor(pipeline.scaler.mean, device=device)[None, :, None]
        self.std = torch.as_tensor(pipeline.scaler.std, device=device)[None, :, None]
        self.valid_samples = valid_samples

    def forward(self, records: torch.Tensor) -> torch.Tensor:
        crop, stride = self.pipeline.crop, self.pipeline.stride
        starts = window_starts(records.shape[-1], crop, stride)
        usable = torch.as_tensor(usable_windows(starts, crop, np.array([self.valid_samples]))[0])
        selected = (records[:, self.index] - self.mean) / self.std
        windows = torch.stack([selected[..., s:s + crop] for s in starts], dim=1)  # [batch, windows, leads, crop]
        logits = self.model(windows.reshape(-1, *windows.shape[2:]))[:, self.class_index].reshape(len(records), -1)
        logits = logits[:, usable]
        return logits.max(dim=1).values if self.pipeline.aggregation == "max" else logits.mean(dim=1)


@dataclass(frozen=True)
class Explanation:
    record_id: str
    class_name: str
    fs: float
    signal: np.ndarray  # [12, samples] in mV at fs, as the model reads it
    attributions: np.ndarray  # [12, samples]; leads the model does not read are 0
    logit: float
    convergence_delta: float

    @property
    def lead_importance(self) -> np.ndarray:
        return lead_importance(self.attributions)

    def to_dict(self) -> dict:
        return {"record_id": self.record_id, "class_name": self.class_name, "fs": self.fs,
                "signal": np.round(self.signal, 4).tolist(), "attributions": self.attributions.tolist(),
                "logit": self.logit, "convergence_delta": self.convergence_delta,
                "lead_importance": dict(zip(STANDARD_LEADS, np.round(self.lead_importance, 4).tolist(), strict=True))}

    @classmethod
    def from_dict(cls, data: dict) -> Explanation:
        return cls(str(data["record_id"]), str(data["class_name"]), float(data["fs"]),
                   np.asarray(data["signal"], dtype=np.float32), np.asarray(data["attributions"], dtype=np.float32),
                   float(data["logit"]), float(data["convergence_delta"]))


def lead_importance(attributions: np.ndarray) -> np.ndarray:
    """[12, samples] -> [12]: each lead's share of the summed absolute attribution."""
    totals = np.abs(attributions).sum(axis=-1)
    return totals / totals.sum() if totals.sum() > 0 else totals


def quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """IG's path points in (0, 1) and their weights (summing to 1): Gauss-Legendre, Captum's default."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (nodes + 1), 0.5 * weights


class _Windows:
    """One record's usable windows as the model reads them, evaluated at points `alpha * record` in batches of at
    most `MAX_WINDOWS_PER_PASS` windows; `gradient` also sums coefficient-weighted window gradients into a
    record-shaped array (overlapping windows add up)."""

    def __init__(self, model: nn.Module, pipeline: InputPipeline, class_index: int, signal: np.ndarray,
                 valid: int) -> None:
        if pipeline.scaler is None:
            raise EcgtlError("the model's pipeline has no fitted scaler")
        self.model, self.class_index, self.crop = model.eval(), class_index, pipeline.crop
        device = next(model.parameters()).device
        self.record = torch.as_tensor(signal[pipeline.lead_index], device=device)  # [channels, samples]
        starts = window_starts(signal.shape[-1], pipeline.crop, pipeline.stride)
        self.starts = torch.as_tensor(starts[usable_windows(starts, pipeline.crop, np.array([valid]))[0]],
                                      device=device)
        self.offsets = torch.arange(pipeline.crop, device=device)[None, :]
        self.mean = torch.as_tensor(pipeline.scaler.mean, device=device)[None, :, None]
        self.std = torch.as_tensor(pipeline.scaler.std, device=device)[None, :, None]

    def __len__(self) -> int:
        return len(self.starts)

    def _batches(self, alphas: np.ndarray, windows: np.ndarray):
        for first in range(0, len(alphas), MAX_WINDOWS_PER_PASS):
            part = slice(first, first + MAX_WINDOWS_PER_PASS)
            positions = self.starts[torch.as_tensor(windows[part], device=self.starts.device)][:, None] + self.offsets
            alpha = torch.as_tensor(alphas[part], dtype=torch.float32, device=self.record.device)[:, None, None]
            yield part, positions, alpha * self.record[:, positions].permute(1, 0, 2)  # [n, channels, crop]

    def logits(self, alphas: np.ndarray, windows: np.ndarray) -> np.ndarray:
        out = np.empty(len(alphas), dtype=np.float64)
        with torch.no_grad():
            for part, _, points in self._batches(alphas, windows):
                out[part] = self.model((points - self.mean) / self.std)[:, self.class_index].double().cpu().numpy()
        return out

    def gradient(self, alphas: np.ndarray, windows: np.ndarray, coefficients: np.ndarray) -> torch.Tensor:
        """sum_j coefficients[j] * d logit(alpha_j * record, window_j) / d record, [channels, samples]."""
        total = torch.zeros_like(self.record)
        for part, positions, points in self._batches(alphas, windows):
            points.requires_grad_(True)
            logits = self.model((points - self.mean) / self.std)[:, self.class_index]
            weights = torch.as_tensor(coefficients[part], dtype=logits.dtype, device=logits.device)
            (grad,) = torch.autograd.grad((logits * weights).sum(), points)
            index = positions[None].expand(total.shape[0], -1, -1).reshape(total.shape[0], -1)
            total.scatter_add_(1, index, grad.permute(1, 0, 2).reshape(total.shape[0], -1))
        return total


def integrated_gradients(model: nn.Module, pipeline: InputPipeline, signal: np.ndarray, class_index: int,
                         valid: int, steps: int) -> tuple[np.ndarray, float, float]:
    """(attributions [12, samples], the record's logit, the completeness gap) of `signal` [12, samples] as the
    pipeline reads it (already at its rate and record-scaled), window by window (see the module docstring)."""
    windows = _Windows(model, pipeline, class_index, signal, valid)
    every = np.arange(len(windows))
    aggregate = np.max if pipeline.aggregation == "max" else np.mean
    logit = float(aggregate(windows.logits(np.ones(len(every)), every)))
    baseline = float(aggregate(windows.logits(np.zeros(len(every)), every)))
    alphas, weights = quadrature(steps)
    path_alphas, path_windows = np.repeat(alphas, len(every)), np.tile(every, steps)
    if pipeline.aggregation == "max":  # the gradient of a max is its arg-max window's
        best = windows.logits(path_alphas, path_windows).reshape(steps, len(every)).argmax(axis=1)
        gradient = windows.gradient(alphas, best, weights)
    else:
        gradient = windows.gradient(path_alphas, path_windows, np.repeat(weights, len(every)) / len(every))
    attributions = np.zeros_like(signal)
    attributions[pipeline.lead_index] = (windows.record * gradient).detach().cpu().numpy()
    return attributions, logit, abs(float(attributions.sum(dtype=np.float64)) - (logit - baseline))


def explain_record(model: nn.Module, pipeline: InputPipeline, signal: np.ndarray, class_index: int, *,
                   class_name: str = "", record_id: str = "", valid_samples: int | None = None,
                   steps: int = DEFAULT_STEPS) -> Explanation:
    """Integrated gradients of one record's logit for `class_index`; `signal` [12, samples] in mV at `pipeline.fs`.
    A record (its valid samples) shorter than one window is refused, as `predict` refuses it."""
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[0] != len(STANDARD_LEADS):
        raise EcgtlError(f"expected a record [12, samples], got {signal.shape}")
    if pipeline.domain != "time":
        raise EcgtlError(f"explain attributes time-domain inputs; this model reads {pipeline.domain}")
    valid = signal.shape[-1] if valid_samples is None else int(valid_samples)
    if valid < pipeline.crop:
        raise EcgtlError(f"{record_id or 'the record'}: {valid / pipeline.fs:.1f} s is shorter than one "
                         f"{pipeline.crop_s:g} s window")
    if pipeline.scaling == "record":
        signal = standardise_records(signal[None], np.array([valid]))[0].astype(np.float32)
    attributions, logit, delta = integrated_gradients(model, pipeline, signal, class_index, valid, steps)
    return Explanation(record_id, class_name, pipeline.fs, signal, attributions, logit, delta)


def class_examples(model: nn.Module, pipeline: InputPipeline, signals: np.ndarray, labels: np.ndarray,
                   classes: list[str], *, per_class: int = 8, lengths: np.ndarray | None = None,
                   record_ids: list[str] | None = None, steps: int = REPORT_STEPS) -> dict[str, list[Explanation]]:
    """Per class with positive records: explanations of up to `per_class` of them (the first in split order)."""
    examples = {}
    long_enough = np.ones(len(labels), dtype=bool) if lengths is None else np.asarray(lengths) >= pipeline.crop
    for j, name in enumerate(classes):
        rows = np.flatnonzero((labels[:, j] > 0) & long_enough)[:per_class]
        if len(rows):
            examples[name] = [explain_record(
                model, pipeline, np.asarray(signals[r]), j, class_name=name,
                record_id=str(record_ids[r]) if record_ids is not None else str(r),
                valid_samples=None if lengths is None else int(lengths[r]), steps=steps) for r in rows]
    return examples


def dataset_lead_importance(examples: dict[str, list[Explanation]]) -> pd.DataFrame:
    """Per class: the mean lead shares over its explained records (rows: classes; columns: n, the 12 leads)."""
    rows = [{"class": name, "n_records": len(found),
             **dict(zip(STANDARD_LEADS, np.mean([e.lead_importance for e in found], axis=0), strict=True))}
            for name, found in examples.items()]
    return pd.DataFrame(rows, columns=["class", "n_records", *STANDARD_LEADS])


def explanations_page(examples: dict[str, list[Explanation]], title: str) -> str:
    """One self-contained page: each class's first example (12-lead heat overlay and lead bars)."""
    figures = [figure for found in examples.values() for figure in explanation_figures(found[0])]
    note = ("<p class='note'>Integrated gradients of each record's logit (baseline: a flat 0 mV record); red samples "
            "push the class's logit up, blue down. Bars: each lead's share of the absolute attribution.</p>")
    return figures_to_html(figures, title, header=f"<h1>{escape(title)}</h1>{note}")


def explanation_figures(explanation: Explanation) -> tuple[go.Figure, go.Figure]:
    """The 12-lead page with the attribution as a heat overlay, and per-lead importance bars beneath."""
    page = ecg_figure(explanation.signal, explanation.fs,
                      f"{explanation.record_id} · {explanation.class_name} (logit {explanation.logit:+.2f})")
    scale = float(np.abs(explanation.attributions).max()) or 1.0
    time = np.arange(explanation.signal.shape[-1]) / explanation.fs
    column_s = min(2.5, time[-1] / 4 if len(time) else 2.5)
    for row, leads in enumerate(LAYOUT_3X4):
        for column, lead in enumerate(leads):
            window = (time >= column * column_s) & (time < (column + 1) * column_s)
            k = STANDARD_LEADS.index(lead)
            page.add_trace(go.Scatter(
                x=time[window], y=explanation.signal[k, window] - row * ROW_SPACING_MV, mode="markers",
                marker=dict(size=4, color=explanation.attributions[k, window] / scale, colorscale="RdBu_r", cmin=-1,
                            cmax=1, opacity=0.8),
                hovertemplate=f"{lead} %{{x:.2f}} s<br>attribution %{{marker.color:.2f}}<extra></extra>"))
    bars = go.Figure()
    bars.add_trace(go.Bar(x=list(STANDARD_LEADS), y=explanation.lead_importance, marker_color="#c0392b"))
    bars.update_layout(title=f"Lead importance for {explanation.class_name} (share of |attribution|)",
                       template="plotly_white", width=820, height=320, yaxis=dict(title="share", rangemode="tozero"))
    return page, bars


def explain_file(record_path: Path, model_uri: str, out: Path, *, class_names: tuple[str, ...] = (), top: int = 3,
                 steps: int = DEFAULT_STEPS) -> list[Path]:
    """`ecgtl explain`: the record (a `.hea` file, any rate: brought to the model's by its pipeline) explained for
    `class_names`, or the model's `top` classes by calibrated probability; writes `explain-<record>.html` and
    `.json` into `out` (nothing else there is touched; the record's id is made a safe, short file name).
    `out` and the record are checked before the model is loaded. Returns the files written."""
    import json
    import tempfile

    from ecgtl import tracking
    from ecgtl.data.cinc import CINC_GAIN_ERRATA
    from ecgtl.data.records import read_record
    from ecgtl.files import check_targets, safe_name, write_files
    from ecgtl.inference import Predictor
    from ecgtl.inputs import MAX_ABS_MV
    from ecgtl.runs import check_model_uri
    from ecgtl.signal_checks import records_problem

    record_path = Path(record_path)
    if record_path.suffix != ".hea" or not record_path.is_file():
        raise EcgtlError(f"{record_path}: expected a record's .hea file")
    check_model_uri(model_uri)
    record = read_record(record_path, gain_errata=CINC_GAIN_ERRATA)
    stem = safe_name(f"explain-{record.record_id}", limit=100)  # a record id of 250 characters is still a name
    check_targets(out, (f"{stem}.html", f"{stem}.json"))
    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor(tracking.download_model(model_uri, Path(tmp)))
    classes = list(predictor.info.classes)
    unknown = [c for c in class_names if c not in classes]
    if unknown:
        raise EcgtlError(f"{model_uri} has no class {', '.join(unknown)}; its classes: {', '.join(classes)}")
    signal = predictor.pipeline.at_model_rate(record.signal, record.fs)
    problem = records_problem(signal[None], min_samples=predictor.pipeline.crop, max_abs_mv=MAX_ABS_MV,
                              fs=predictor.pipeline.fs)
    if problem:  # what predict refuses
        raise EcgtlError(f"{record_path}: {problem}")
    if not class_names:
        probabilities = predictor.predict_proba(signal[None])[0]
        class_names = tuple(classes[j] for j in np.argsort(-probabilities)[:top])
    explanations = [explain_record(predictor.model, predictor.pipeline, signal, classes.index(name), class_name=name,
                                   record_id=record.record_id, steps=steps) for name in class_names]
    page = explanations_page({e.class_name: [e] for e in explanations},
                             f"ecgtl explain {record.record_id} ({model_uri})")
    summary = json.dumps({"record": record.record_id, "model": model_uri, "fs": predictor.pipeline.fs, "classes": [
        {"class": e.class_name, "logit": e.logit, "convergence_delta": e.convergence_delta,
         "lead_importance": e.to_dict()["lead_importance"]} for e in explanations]}, indent=1)
    return write_files(out, {f"{stem}.html": page, f"{stem}.json": summary})
