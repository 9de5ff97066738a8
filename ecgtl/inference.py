"""A model bundle: weights plus everything inference needs (fs, window, stride, aggregation, lead scaler,
class names, calibrator, thresholds). Predicts calibrated probabilities from raw mV signals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from ecgtl.data.dataset import LeadScaler
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.calibration import calibrator_from_dict
from ecgtl.models import EcgModel, create_model
from ecgtl.training.loop import predict_logits

BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.pt"


@dataclass
class BundleInfo:
    architecture: str
    classes: list[str]
    label_set: str
    fs: float
    crop_s: float
    stride_s: float
    aggregation: str
    scaler: dict
    calibrator: dict | None = None
    thresholds: list[float] | None = None
    extra: dict = field(default_factory=dict)
    training: list[dict] = field(default_factory=list)  # TrainingRecords.to_dict() per dataset (leak guards)


def save_bundle(folder: Path, model: EcgModel, info: BundleInfo) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    (folder / BUNDLE_JSON).write_text(json.dumps(asdict(info), indent=1))
    return folder


def find_bundle(folder: Path) -> Path:
    """The folder holding bundle.json inside a downloaded model (it sits under artifacts/bundle/)."""
    folder = Path(folder)
    found = sorted(folder.rglob(BUNDLE_JSON))
    if not found:
        raise EcgtlError(f"{folder}: no {BUNDLE_JSON} found: not an ecgtl model")
    return found[0].parent


def load_bundle(folder: Path) -> tuple[EcgModel, BundleInfo]:
    folder = find_bundle(folder)
    info = BundleInfo(**json.loads((folder / BUNDLE_JSON).read_text()))
    model = create_model(info.architecture, len(info.classes))
    model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return model, info


class Predictor:
    """Calibrated probabilities [records, classes] from raw signals [records, 12, samples] in mV at `info.fs`."""

    def __init__(self, folder: Path) -> None:
        self.model, self.info = load_bundle(folder)
        self.model.eval()
        self.scaler = LeadScaler.from_dict(self.info.scaler)
        self.calibrator = calibrator_from_dict(self.info.calibrator) if self.info.calibrator else None

    def logits(self, signals: np.ndarray) -> np.ndarray:
        signals = np.asarray(signals, dtype=np.float32)
        if signals.ndim != 3 or signals.shape[1] != 12:
            raise EcgtlError(f"expected signals [records, 12, samples] in mV at {self.info.fs:g} Hz, got {signals.shape}")
        crop = int(round(self.info.crop_s * self.info.fs))
        stride = int(round(self.info.stride_s * self.info.fs))
        lengths = np.full(len(signals), signals.shape[-1])
        return predict_logits(self.model, signals, lengths, self.scaler, crop, stride, self.info.aggregation,
                              device=torch.device("cpu"))

    def predict_proba(self, signals: np.ndarray) -> np.ndarray:
        logits = self.logits(signals)
        return self.calibrator.predict_proba(logits) if self.calibrator else expit(logits)
