"""A model bundle: weights plus everything inference needs (the input pipeline: fs, leads, domain, window,
stride, aggregation, scaler; class names, calibrator, thresholds; the records it was trained on).
Predicts calibrated probabilities from raw mV signals without importing the trainer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from ecgtl.errors import EcgtlError
from ecgtl.evaluation.calibration import calibrated_probabilities, calibrator_from_dict
from ecgtl.files import find_files, read_text_file
from ecgtl.models import create_model
from ecgtl.models.base import EcgModel
from ecgtl.pipeline import InputPipeline

BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.pt"


@dataclass
class BundleInfo:
    architecture: str
    classes: list[str]
    label_set: str
    pipeline: dict  # InputPipeline.to_dict()
    calibrator: dict | None = None
    thresholds: list[float] | None = None
    extra: dict = field(default_factory=dict)
    training: list[dict] = field(default_factory=list)  # TrainingRecords.to_dict() per dataset (leak guards)
    train_priors: list[float] | None = None  # positives per class in the training rows (label-shift source)
    # Per-class Platt scaling fitted on the same validation split: a slope *and a bias* per class, the
    # bias-corrected calibration EM needs (Alexandari et al. 2020); None in bundles logged before it.
    posterior_calibrator: dict | None = None

    def priors_for(self, classes: list[str], uri: str) -> np.ndarray:
        """The training priors in the order of `classes` (the label-shift source); a one-line error for bundles
        that store none or lack a class."""
        if self.train_priors is None:
            raise EcgtlError(f"{uri}: the bundle stores no training priors (logged before bundles kept them); "
                             "label_shift needs them: train it again")
        by_class = dict(zip(self.classes, self.train_priors, strict=True))
        missing = [c for c in classes if c not in by_class]
        if missing:
            raise EcgtlError(f"{uri} has no prior for {', '.join(missing)}: label_shift needs these classes among "
                             "the model's")
        return np.array([by_class[c] for c in classes])

    def em_calibrator(self):
        """The calibrator whose posteriors EM reads: the bias-corrected one, else the stored primary one."""
        chosen = self.posterior_calibrator or self.calibrator
        return calibrator_from_dict(chosen) if chosen else None

    @property
    def fs(self) -> float:
        return float(self.pipeline["fs"])

    def input_pipeline(self) -> InputPipeline:
        return InputPipeline.from_dict(self.pipeline)

    @classmethod
    def from_json(cls, data: dict) -> BundleInfo:
        """Also reads bundles of ecgtl 0.1 (fs, crop_s, stride_s, aggregation and scaler at the top level)."""
        data = dict(data)
        if "pipeline" not in data:
            data["pipeline"] = {key: data.pop(key) for key in ("fs", "crop_s", "stride_s", "aggregation", "scaler")}
        return cls(**data)


def save_bundle(folder: Path, model: EcgModel, info: BundleInfo) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    (folder / BUNDLE_JSON).write_text(json.dumps(asdict(info), indent=1))
    return folder


def find_bundle(folder: Path) -> Path:
    """The folder holding bundle.json inside a downloaded model (it sits under artifacts/bundle/)."""
    folder = Path(folder)
    found = [p for p in find_files(folder, BUNDLE_JSON) if p.name == BUNDLE_JSON]
    if not found:
        raise EcgtlError(f"{folder}: no {BUNDLE_JSON} found: not an ecgtl model")
    return found[0].parent


def load_bundle(folder: Path) -> tuple[EcgModel, BundleInfo]:
    """The model and its description from a bundle folder; a damaged bundle is one line naming what is missing."""
    folder = find_bundle(folder)
    try:
        info = BundleInfo.from_json(json.loads(read_text_file(folder / BUNDLE_JSON, "model description", 64 << 20)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EcgtlError(f"{folder / BUNDLE_JSON}: not a readable ecgtl model description ({exc})"[:400]) from None
    if not (folder / WEIGHTS).is_file():
        raise EcgtlError(f"{folder}: the model bundle has no {WEIGHTS} (an incomplete download or copy?)")
    model = create_model(info.architecture, len(info.classes), n_leads=info.input_pipeline().n_channels,
                         config=info.extra.get("architecture_config"))
    model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return model, info


class Predictor:
    """Calibrated probabilities [records, classes] from raw signals [records, 12, samples] in mV at `info.fs`."""

    def __init__(self, folder: Path) -> None:
        self.model, self.info = load_bundle(folder)
        self.model.eval()
        self.pipeline = self.info.input_pipeline()
        self.calibrator = calibrator_from_dict(self.info.calibrator) if self.info.calibrator else None

    def reading_at(self, fs: float) -> Predictor:
        """This predictor reading records at `fs` natively: its pipeline at that rate and the model's step scaled
        (S4D; a convolutional model refuses, one line). Shares the model."""
        import copy
        from dataclasses import replace

        native = copy.copy(self)
        native.pipeline = replace(self.pipeline, fs=float(fs))
        self.model.set_rate_scale(self.info.fs / float(fs))
        return native

    def logits(self, signals: np.ndarray) -> np.ndarray:
        signals = np.asarray(signals, dtype=np.float32)
        if signals.ndim != 3 or signals.shape[1] != 12:
            raise EcgtlError(f"expected signals [records, 12, samples] in mV at {self.info.fs:g} Hz, got {signals.shape}")
        return self.pipeline.predict_logits(self.model, signals, device=torch.device("cpu"))

    def predict_proba(self, signals: np.ndarray) -> np.ndarray:
        logits = self.logits(signals)
        return calibrated_probabilities(logits, self.calibrator)

    def calibrated_thresholds(self) -> dict[str, float]:
        """Each class's F1 threshold mapped to the calibrated scale (calibrators are monotone per class), so that
        a shown probability and its label can be read together."""
        thresholds = np.asarray(self.info.thresholds if self.info.thresholds else [0.5] * len(self.info.classes))
        logits = np.log(np.clip(thresholds, 1e-7, 1 - 1e-7) / np.clip(1 - thresholds, 1e-7, 1))[None, :]
        mapped = calibrated_probabilities(logits, self.calibrator)[0]
        return {name: round(float(value), 4) for name, value in zip(self.info.classes, mapped, strict=True)}

    def predict(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and labels [records, classes]; a label is on where the uncalibrated
        probability reaches the class's F1 threshold chosen on validation (how the thresholds were fitted)."""
        logits = self.logits(signals)
        probabilities = calibrated_probabilities(logits, self.calibrator)
        thresholds = np.asarray(self.info.thresholds if self.info.thresholds else [0.5] * len(self.info.classes))
        return probabilities, expit(logits) >= thresholds[None, :]
