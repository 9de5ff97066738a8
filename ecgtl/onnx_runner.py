"""Run an exported ecgtl model with onnxruntime and numpy only (no torch, no ecgtl): the reference runner that
`ecgtl export` copies beside `model.onnx` and `pipeline.json`.

    python run_onnx.py EXPORT_DIR signals.npy        # signals [records, 12, samples] in mV at the model's fs
    -> JSON: classes, calibrated probabilities and labels per record

Input the model cannot score (a single record [12, samples] or an empty batch, NaN or implausible values,
records shorter than one window: `signal_checks.records_problem`, the contract serving applies, with the limits in
`pipeline.json`) is refused with one line on stderr and exit status 2; the JSON never holds NaN.

Every step is the torch pipeline's (`ecgtl.pipeline.InputPipeline.predict_logits`, the stored calibrator and
thresholds), written again in numpy: per-record standardisation (scaling=record), lead selection, sliding
windows over the whole record (the last flush with its end), the domain transform, the lead scaler, the window
model, max or mean over windows, calibration; a label is on where the uncalibrated probability reaches the
class's threshold. Records must already be at the model's rate (`pipeline.json` says which).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

try:  # inside ecgtl; beside run_onnx.py in an export folder, the file is imported on its own
    from ecgtl.signal_checks import records_problem
except ImportError:
    from signal_checks import records_problem

FLAT_LEAD_SD = 1e-6  # as ecgtl.data.signal: a flatter lead becomes zeros
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MAX_WINDOWS_PER_PASS = 256


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def _standardise(signals: np.ndarray) -> np.ndarray:
    block = signals.astype(np.float64)
    centred = block - block.mean(axis=-1, keepdims=True)
    sd = np.sqrt((centred ** 2).mean(axis=-1, keepdims=True))
    return (centred / np.where(sd > FLAT_LEAD_SD, sd, np.inf)).astype(np.float32)


def _window_starts(length: int, crop: int, stride: int) -> np.ndarray:
    if length <= crop:
        return np.array([0])
    starts = np.arange(0, length - crop + 1, stride)
    return starts if starts[-1] == length - crop else np.append(starts, length - crop)


def _to_domain(windows: np.ndarray, domain: str) -> np.ndarray:
    if domain == "time":
        return windows.astype(np.float32, copy=False)
    spectrum = np.fft.rfft(windows, axis=-1)
    return {"fft_abs": np.abs, "fft_real": np.real, "fft_imag": np.imag}[domain](spectrum).astype(np.float32)


def calibrate(logits: np.ndarray, calibrator: dict | None) -> np.ndarray:
    """The stored calibrator's probabilities (platt, temperature, isotonic), else the plain sigmoid."""
    logits = np.asarray(logits, dtype=np.float64)
    method = (calibrator or {}).get("method")
    if method == "platt":
        return _sigmoid(logits * np.asarray(calibrator["slopes"]) + np.asarray(calibrator["intercepts"]))
    if method in ("temperature", "temperature_per_class"):
        return _sigmoid(logits / np.asarray(calibrator["temperatures"]))
    if method == "isotonic":
        p = _sigmoid(logits)
        return np.stack([np.interp(p[:, j], x, y) for j, (x, y) in
                         enumerate(zip(calibrator["knots_x"], calibrator["knots_y"], strict=True))], axis=1)
    if method is None:
        return _sigmoid(logits)
    raise ValueError(f"unknown calibrator {method!r}")


class OnnxPipeline:
    """`pipeline.json` + `model.onnx` of one export folder."""

    def __init__(self, folder: str | Path) -> None:
        import onnxruntime

        folder = Path(folder)
        self.spec = json.loads((folder / "pipeline.json").read_text(encoding="utf-8"))
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        pipeline = self.spec["pipeline"]
        self.fs = float(pipeline["fs"])
        self.crop = int(round(float(pipeline["crop_s"]) * self.fs))
        self.stride = int(round(float(pipeline["stride_s"]) * self.fs))
        self.lead_index = np.array([STANDARD_LEADS.index(lead) for lead in pipeline["leads"]])
        self.mean = np.asarray(pipeline["scaler"]["mean"], dtype=np.float32)
        self.std = np.asarray(pipeline["scaler"]["std"], dtype=np.float32)
        if "contract" not in self.spec:
            raise ValueError("pipeline.json carries no input contract: export the model again with this ecgtl")
        self.contract = self.spec["contract"]

    def problem(self, signals: np.ndarray) -> str | None:
        """Why `signals` cannot be scored (the input contract), or None."""
        return records_problem(signals, min_samples=self.contract["min_samples"],
                               max_abs_mv=self.contract["max_abs_mv"], fs=self.contract["fs"])

    def logits(self, signals: np.ndarray) -> np.ndarray:
        """[records, classes] from records [records, 12, samples] in mV at the model's rate."""
        pipeline = self.spec["pipeline"]
        problem = self.problem(signals)
        if problem:
            raise ValueError(problem)
        block = np.asarray(signals, dtype=np.float32)
        length = block.shape[-1]
        if pipeline.get("scaling") == "record":
            block = _standardise(block)
        if length < self.crop:
            block = np.pad(block, ((0, 0), (0, 0), (0, self.crop - length)))
        starts = _window_starts(block.shape[-1], self.crop, self.stride)
        usable = (starts + self.crop <= max(length, self.crop)) | (starts == 0)
        per_pass = max(1, MAX_WINDOWS_PER_PASS // len(block))
        parts = []
        for first in range(0, len(starts), per_pass):
            chunk = starts[first:first + per_pass]
            windows = np.stack([block[..., s:s + self.crop] for s in chunk], axis=1).reshape(-1, 12, self.crop)
            inputs = (_to_domain(windows[:, self.lead_index], pipeline["domain"]) - self.mean[None, :, None]) \
                / self.std[None, :, None]
            out = self.session.run(None, {self.input_name: inputs.astype(np.float32)})[0]
            parts.append(out.reshape(len(block), len(chunk), -1))
        logits = np.concatenate(parts, axis=1)
        if pipeline["aggregation"] == "max":
            return np.where(usable[None, :, None], logits, -np.inf).max(axis=1)
        return (logits * usable[None, :, None]).sum(axis=1) / usable.sum()

    def predict(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and labels [records, classes] (labels at the stored thresholds)."""
        logits = self.logits(signals)
        thresholds = np.asarray(self.spec.get("thresholds") or [0.5] * len(self.spec["classes"]))
        return calibrate(logits, self.spec.get("calibrator")), _sigmoid(logits) >= thresholds[None, :]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        runner = OnnxPipeline(argv[0])
        signals = np.load(argv[1], allow_pickle=False)
        probabilities, labels = runner.predict(signals)
        if not np.isfinite(probabilities).all():
            raise ValueError("the model's output is not finite for this input")
    except (OSError, ValueError, KeyError) as exc:  # unreadable files, inputs outside the contract: one line
        print(f"error: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 2
    classes = runner.spec["classes"]
    print(json.dumps({"classes": classes, "probabilities": probabilities.round(6).tolist(),
                      "labels": [[c for c, on in zip(classes, row, strict=True) if on] for row in labels]},
                     allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
