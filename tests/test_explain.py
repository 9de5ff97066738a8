"""Attributions: the attributed function is the pipeline's record logit, IG is complete, and on synthetic
records (whose generator puts axis deviations in the limb leads and bundle-branch blocks in V1/V6) the
attributions of a trained model concentrate where the generator put the evidence."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import store_trained_once, use_mlflow_store

from ecgtl.data.cache import prepare
from ecgtl.errors import EcgtlError
from ecgtl.inputs import STANDARD_LEADS
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import DataConfig, PretrainConfig
from ecgtl.training.config import TrainConfig

pytest.importorskip("captum")

from ecgtl.explain import RecordLogit, class_examples, explain_file, explain_record  # noqa: E402

SPEC = "synthetic:ptbxl?n=1000&seed=3"
LIMB, V1_V6 = slice(0, 6), [STANDARD_LEADS.index("V1"), STANDARD_LEADS.index("V6")]


def small_pipeline(signals: np.ndarray, aggregation: str = "max") -> InputPipeline:
    return InputPipeline(fs=100.0, aggregation=aggregation).fit_scaler(signals, np.full(len(signals), signals.shape[-1]))


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_the_attributed_logit_is_the_pipelines_and_ig_is_complete(aggregation):
    rng = np.random.default_rng(0)
    signals = rng.normal(0, 0.3, (4, 12, 1000)).astype(np.float32)
    pipeline = small_pipeline(signals, aggregation)
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 3).eval()
    expected = pipeline.predict_logits(model, signals, device=torch.device("cpu"))
    for i in range(len(signals)):
        got = float(RecordLogit(model, pipeline, 2, signals.shape[-1])(torch.from_numpy(signals[i:i + 1])).detach())
        assert got == pytest.approx(float(expected[i, 2]), abs=2e-4)  # BatchNorm folded there, not here
    explanation = explain_record(model, pipeline, signals[0], 2, steps=64)
    baseline = float(RecordLogit(model, pipeline, 2, 1000)(torch.zeros(1, 12, 1000)).detach())
    gap = explanation.logit - baseline
    assert explanation.attributions.sum() == pytest.approx(gap, abs=0.05 * abs(gap) + 1e-3)
    assert explanation.lead_importance.sum() == pytest.approx(1.0)
    with pytest.raises(EcgtlError, match="time-domain"):
        RecordLogit(model, InputPipeline(fs=100.0, domain="fft_abs").fit_scaler(signals, np.full(4, 1000)), 0, 1000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model pretrained (through the stage, with explanations on its report) on synthetic PTB-XL."""
    from ecgtl.stages.pretrain import pretrain

    def build():
        # The attributions below are of this trained model, whose numbers depend on torch's thread count (its
        # sums run in another order): two threads, whatever the worker was given, so it is always the same model.
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            result = pretrain(PretrainConfig(data=DataConfig(spec=SPEC), model="xresnet1d18", n_bootstrap=20,
                                             train=TrainConfig(epochs=6, batch_size=64, explain_examples=2)))
        finally:
            torch.set_num_threads(threads)
        return result, prepare(DataConfig(spec=SPEC).prepare_config())

    folder, (result, prepared) = store_trained_once(tmp_path_factory, "explain", build)
    return {"folder": folder, "result": result, "prepared": prepared}


def test_attributions_concentrate_where_the_generator_put_the_evidence(trained, monkeypatch):
    """An axis deviation (LAFB: the frontal QRS axis) mostly in the limb leads, more than the bundle-branch blocks;
    the blocks (CRBBB, CLBBB: R' in V1, broad S / notched R in V6) with more of V1+V6 than LAFB. (Shares are
    relative to each other: IG with a 0 mV baseline also follows each lead's amplitude, so 1/12 per lead is no
    reference.)
    (LPFB, the other axis class, is too rare at this size to be learned reliably.)"""
    from ecgtl import tracking
    from ecgtl.inference import load_bundle

    prepared = trained["prepared"]
    use_mlflow_store(monkeypatch, trained["folder"], "explain", cache=True)
    model, info = load_bundle(tracking.download_model(trained["result"].model_uri, download_dir(trained)))
    train = prepared.split("train")
    wanted = ["LAFB", "CRBBB", "CLBBB"]
    columns = [list(prepared.classes).index(c) for c in wanted]
    examples = class_examples(model, info.input_pipeline(), train.signals, train.labels[:, columns], wanted,
                              per_class=16, steps=16)
    share = {name: np.mean([e.lead_importance for e in found], axis=0) for name, found in examples.items()}
    limb = {name: float(s[LIMB].sum()) for name, s in share.items()}
    v1v6 = {name: float(s[V1_V6].sum()) for name, s in share.items()}
    assert limb["LAFB"] > 0.5 and limb["LAFB"] > max(limb["CRBBB"], limb["CLBBB"]), limb
    assert min(v1v6["CRBBB"], v1v6["CLBBB"]) > v1v6["LAFB"], v1v6  # the other half of the double dissociation


def download_dir(trained) -> Path:
    return Path(tempfile.mkdtemp(dir=trained["folder"]))


def test_the_report_carries_explanations_and_the_command_explains_a_record_file(trained, tmp_path, monkeypatch):
    from ecgtl import tracking
    from ecgtl.stages.common import EXPLANATION_EXAMPLE_FILE, EXPLANATIONS_PAGE, LEAD_IMPORTANCE_FILE

    use_mlflow_store(monkeypatch, trained["folder"], "explain", cache=True)
    run_id = trained["result"].run_id
    page = Path(tracking.download_artifact(run_id, EXPLANATIONS_PAGE)).read_text(encoding="utf-8")
    assert page.count("plotly.js v") <= 1 and "Integrated gradients" in page

    table = pd.read_csv(tracking.download_artifact(run_id, LEAD_IMPORTANCE_FILE))
    np.testing.assert_allclose(table[list(STANDARD_LEADS)].sum(axis=1), 1.0, atol=1e-6)
    assert (table["n_records"] <= 2).all() and len(table) >= 5
    example = json.loads(Path(tracking.download_artifact(run_id, EXPLANATION_EXAMPLE_FILE)).read_text())
    assert len(example["signal"]) == 12 and len(example["attributions"][0]) == len(example["signal"][0])

    record = next((trained["folder"] / "cache" / "synthetic").rglob("*.hea"))
    out = tmp_path / "out"
    (out / "keep.txt").parent.mkdir()
    (out / "keep.txt").write_text("mine")
    written = explain_file(record, trained["result"].model_uri, out, class_names=("LAFB", "CRBBB"), steps=8)
    data = json.loads(written[1].read_text())
    assert [c["class"] for c in data["classes"]] == ["LAFB", "CRBBB"]
    assert sum(data["classes"][0]["lead_importance"].values()) == pytest.approx(1.0, abs=1e-3)
    assert (out / "keep.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == sorted(
        ["keep.txt", written[0].name, written[1].name])
    with pytest.raises(EcgtlError, match="no class NOPE"):
        explain_file(record, trained["result"].model_uri, out, class_names=("NOPE",))
    with pytest.raises(EcgtlError, match=r"expected a record's \.hea file"):
        explain_file(tmp_path / "missing.dat", trained["result"].model_uri, out)
