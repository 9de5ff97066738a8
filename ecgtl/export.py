"""`ecgtl export URI --format onnx --out DIR`: a registered (or any) ecgtl model for runtimes without Python's
torch.

DIR gets `model.onnx` (the window model, BatchNorm folded into the convolutions, input `windows`
[n, channels, samples of one window] float32, output `logits` [n, classes]; ONNX opset `OPSET`, exported by
torch's dynamo exporter), `pipeline.json` (everything around the window model: leads, domain, scaling, scaler,
windows, aggregation, calibrator, thresholds, classes, fs, the input contract's limits) and `run_onnx.py`, a
reference runner that needs only numpy and onnxruntime (`ecgtl/onnx_runner.py`, with `signal_checks.py`: the
contract's checks, the same serving applies). Nothing else in DIR is touched; files are written beside
and moved into place together (`files.write_files`), so an interrupted or failed export leaves the previous one
whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ecgtl import __version__, tracking
from ecgtl.config import check_choice
from ecgtl.errors import EcgtlError
from ecgtl.files import check_targets, write_files
from ecgtl.runs import check_model_uri

OPSET = 18
FORMATS = ("onnx",)
FILES = ("model.onnx", "pipeline.json", "run_onnx.py", "signal_checks.py")


def pipeline_spec(info, opset: int = OPSET) -> dict:
    """`pipeline.json`: what the reference runner needs besides the window model, with the input contract's
    limits (`contract`: read by `signal_checks.records_problem` in the runner, as serving applies them)."""
    from ecgtl.inputs import MAX_ABS_MV

    pipeline = info.input_pipeline()
    return {"format": "ecgtl-onnx", "ecgtl_version": __version__, "opset": opset, "architecture": info.architecture,
            "classes": list(info.classes), "label_set": info.label_set, "pipeline": info.pipeline,
            "calibrator": info.calibrator, "thresholds": info.thresholds,
            "input": "signals [records, 12, samples] in mV at pipeline.fs, leads in the standard order",
            "contract": {"min_samples": pipeline.crop, "max_abs_mv": MAX_ABS_MV, "fs": pipeline.fs}}


def export(uri: str, out: Path, fmt: str = "onnx") -> list[Path]:
    """Write the export of `uri` into `out`; returns the files written. The URI and `out` (a folder that can be
    created, with no folder where a file goes) are checked before the model is loaded; the files are written by
    `files.write_files`, so `out` holds either the previous export or this one, never a mix."""
    check_choice("export format", fmt, FORMATS)
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ModuleNotFoundError:
        raise EcgtlError("ONNX export needs the onnx extra: pip install 'ecgtl[onnx]'") from None
    import torch

    from ecgtl.inference import load_bundle
    from ecgtl.models.base import fold_batchnorm

    check_model_uri(uri)
    out = check_targets(out, FILES)
    tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_bundle(tracking.download_model(uri, Path(tmp)))
    pipeline = info.input_pipeline()
    window_model = fold_batchnorm(model.eval()).for_export(pipeline.input_length)
    example = torch.zeros(2, pipeline.n_channels, pipeline.input_length)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))  # beside the targets: the moves are renames
    try:
        torch.onnx.export(window_model, (example,), str(staging / "model.onnx"), input_names=["windows"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("n")},), opset_version=OPSET,
                          dynamo=True, external_data=False, verbose=False)
        (staging / "pipeline.json").write_text(json.dumps(pipeline_spec(info), indent=1), encoding="utf-8")
        shutil.copyfile(Path(__file__).with_name("onnx_runner.py"), staging / "run_onnx.py")
        shutil.copyfile(Path(__file__).with_name("signal_checks.py"), staging / "signal_checks.py")
        return write_files(out, {name: staging / name for name in FILES})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
