"""The model as MLflow serves it: a pyfunc around the bundle's `Predictor`, shipped with the ecgtl package
(`code_paths`), so it loads and serves where ecgtl is not installed.

Input: float32 `[records, 12, samples]`, leads I, II, III, aVR, aVL, aVF, V1-V6, in mV, at the model's sampling
rate; the optional param `fs` states another rate, and the records are then resampled to the model's. Output:
calibrated probabilities, one column per class. Bad input (shape, lead count, dtype, non-finite values, values
beyond ±`MAX_ABS_MV` mV, more than `MAX_REQUEST_VALUES` values, an invalid `fs`, records shorter than one
window) raises an `MlflowException` with INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with
HTTP 400 and the message, never 500 or a silent wrong answer; so does an output that is not finite (never a
200 with bare `NaN` tokens). Windows are scored in bounded batches, so memory stays flat for long records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_NAME = "ecg_mv"


def input_description(fs: float, classes: list[str]) -> str:
    return (f"float32 [records, 12, samples]: leads I, II, III, aVR, aVL, aVF, V1-V6 in mV at {fs:g} Hz (or pass "
            f"params fs=<rate> to have them resampled); returns calibrated probabilities of {', '.join(classes)}")


def signature(fs: float, classes: list[str]):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 12, -1), name=INPUT_NAME)]),
        outputs=Schema([ColSpec("double", name) for name in classes]),
        params=ParamSchema([ParamSpec("fs", "double", float(fs))]),
    )


def _bad_input(message: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def validated_signals(model_input, pipeline, fs: float | None) -> np.ndarray:
    """The records as float32 [records, 12, samples] at the rate of `pipeline` (the model's `InputPipeline`),
    or a 400-class error saying why (`signal_checks.records_problem`, the contract every entry point applies)."""
    from ecgtl.inputs import FS_RANGE, MAX_ABS_MV, MAX_REQUEST_VALUES
    from ecgtl.signal_checks import records_problem

    if isinstance(model_input, dict):
        model_input = model_input.get(INPUT_NAME, next(iter(model_input.values()), None))
    rate = pipeline.fs if fs is None else fs
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise _bad_input(f"fs {fs!r} is not a number") from None
    if not (np.isfinite(rate) and FS_RANGE[0] <= rate <= FS_RANGE[1]):
        raise _bad_input(f"fs {rate:g} Hz is outside {FS_RANGE[0]:g}..{FS_RANGE[1]:g} Hz")
    signals = np.asarray(model_input)
    problem = records_problem(signals, min_samples=pipeline.crop_s * rate, max_abs_mv=MAX_ABS_MV, fs=rate,
                              max_values=MAX_REQUEST_VALUES)
    if problem:
        raise _bad_input(problem)
    return pipeline.at_model_rate(signals, rate)


def pyfunc_model():
    """A fresh `EcgPyfuncModel` (mlflow is imported only here)."""
    import mlflow.pyfunc

    class EcgPyfuncModel(mlflow.pyfunc.PythonModel):
        """See the module docstring of `ecgtl.serving`."""

        def load_context(self, context):
            from ecgtl.inference import Predictor

            self.predictor = Predictor(Path(context.artifacts["bundle"]))

        # Typed input: MLflow then stops warning "Add type hints to the `predict` method" at every
        # registration; an ndarray hint means "validate against the logged signature" (no schema from hints).
        def predict(self, context, model_input: np.ndarray, params: dict | None = None):  # noqa: ARG002
            import pandas as pd

            info = self.predictor.info
            fs = (params or {}).get("fs")
            signals = validated_signals(model_input, self.predictor.pipeline, fs)
            probabilities = self.predictor.predict_proba(signals)
            if not np.isfinite(probabilities).all():
                bad = sorted({int(i) for i in np.flatnonzero(~np.isfinite(probabilities).all(axis=1))})
                raise _bad_input(f"the model's output is not finite for record(s) {bad[:10]}: inputs out of range")
            return pd.DataFrame(probabilities, columns=info.classes)

    return EcgPyfuncModel()
