"""`ecgtl predict`: a model's probabilities and labels for WFDB/CinC records on disk, at any sampling rate.

Each record is read (any layout the readers know: a `.hea` file, or a folder searched for `.hea` files),
resampled to the model's rate through the model's own pipeline, and scored over sliding windows of its whole
length. Labels use the thresholds stored with the model. Records that cannot be read are listed with the reason.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ecgtl.config import check_choice
from ecgtl.data.records import read_record
from ecgtl.errors import EcgtlError, RecordError
from ecgtl.files import find_files
from ecgtl.inputs import MAX_ABS_MV
from ecgtl.runs import check_model_uri
from ecgtl.signal_checks import records_problem
from ecgtl.stages.configs import RatePolicy


@dataclass
class Prediction:
    record: str
    path: str
    fs: float
    seconds: float
    probabilities: dict[str, float]
    labels: list[str]


@dataclass
class Predictions:
    model_uri: str
    classes: list[str]
    fs: float
    thresholds: dict[str, float] = field(default_factory=dict)  # on the calibrated scale shown
    results: list[Prediction] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def to_json(self) -> str:
        return json.dumps({"model": self.model_uri, "fs": self.fs, "classes": self.classes,
                           "thresholds": self.thresholds,
                           "records": [r.__dict__ for r in self.results],
                           "problems": [{"path": p, "reason": r} for p, r in self.problems]}, indent=1)

    def render(self, top: int = 3) -> str:
        lines = [f"model {self.model_uri} ({len(self.classes)} classes at {self.fs:g} Hz): "
                 f"{len(self.results)} records scored, {len(self.problems)} unreadable"]
        width = max([len(r.record) for r in self.results] + [6])
        lines.append(f"{'record':<{width}}  {'fs':>6}  {'s':>6}  labels (at stored thresholds)     top probabilities "
                     "(calibrated; --json lists each class's threshold on this scale)")
        for result in self.results:
            best = sorted(result.probabilities.items(), key=lambda item: -item[1])[:top]
            labels = ", ".join(result.labels) or "-"
            lines.append(f"{result.record:<{width}}  {result.fs:>6g}  {result.seconds:>6.1f}  {labels:<32}  "
                         + "  ".join(f"{name} {p:.3f}" for name, p in best))
        for path, reason in self.problems:
            lines.append(f"unreadable  {reason}" if path in reason else f"unreadable  {path}: {reason}")
        return "\n".join(lines)


def header_files(path: Path) -> tuple[list[Path], Path]:
    """The `.hea` files a path names, and the folder their payloads must lie in."""
    path = Path(path)
    if not path.exists():
        raise EcgtlError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".hea":
            raise EcgtlError(f"{path}: not a WFDB header (.hea)")
        return [path], path.parent
    found = find_files(path, ".hea")
    if not found:
        raise EcgtlError(f"{path}: no .hea files below this folder")
    return found, path


def predict(path: Path, model_uri: str, rate_policy: str = "resample") -> Predictions:
    """Score the records at `path`. `rate_policy`: records at another rate than the model's are resampled to it,
    or (`native`, an S4D model) read at their own rate with the model's step scaled."""
    from ecgtl import tracking
    from ecgtl.data.cinc import CINC_GAIN_ERRATA
    from ecgtl.inference import Predictor

    check_choice("rate_policy", rate_policy, RatePolicy)
    check_model_uri(model_uri)  # before folders are walked or anything is fetched
    headers, root = header_files(path)
    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor(tracking.download_model(model_uri, Path(tmp)))
    info = predictor.info
    out = Predictions(model_uri, list(info.classes), info.fs, predictor.calibrated_thresholds())
    for header in headers:
        try:
            record = read_record(header, gain_errata=CINC_GAIN_ERRATA, root=root)
        except RecordError as exc:
            out.problems.append((str(header), str(exc)))
            continue
        scorer = predictor.reading_at(record.fs) if rate_policy == "native" else predictor
        signal = scorer.pipeline.at_model_rate(record.signal, record.fs)[None]
        problem = records_problem(signal, min_samples=scorer.pipeline.crop, max_abs_mv=MAX_ABS_MV,
                                  fs=scorer.pipeline.fs)
        if problem:
            out.problems.append((str(header), f"{header}: {problem}"))
            continue
        probabilities, labels = scorer.predict(signal)
        out.results.append(Prediction(record.record_id, str(header), record.fs, record.signal.shape[-1] / record.fs,
                                      {c: round(float(p), 4) for c, p in zip(info.classes, probabilities[0], strict=True)},
                                      [c for c, on in zip(info.classes, labels[0], strict=True) if on]))
    return out
