"""Careless and hostile use of export, explain, the ONNX runner and the training options (each case failed on
91ea44d): options that name something are checked before any work (one line, exit 2, nothing left behind),
files are written only inside the folder named (never through a symlink there, never half an export), explain's
memory is bounded like inference, the runner applies serving's input contract, a non-finite loss stops the run,
and names from a store cannot drive the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import digital_ecg, log_untrained_model, use_mlflow_store, write_cinc

from ecgtl.cli import cli
from ecgtl.errors import EcgtlError


def _one_line(args: list[str], message: str) -> None:
    """Exit 2 and one error line, the last one, naming the problem (progress lines may come before it)."""
    result = CliRunner().invoke(cli, args)
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code == 2 and errors == lines[-1:] and message in lines[-1], result.output
    assert "Traceback" not in result.output


@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything is downloaded or copied from a model URI."""
    import mlflow

    def refuse(*args, **kwargs):
        raise AssertionError(f"a model was fetched: {args} {kwargs}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse)


# ------------------------------------------------------------------------------------------------ model URIs
def test_a_folder_that_is_not_a_model_is_refused_before_anything_is_copied(tmp_path, monkeypatch, no_download):
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "big.bin").write_bytes(b"\0" * 4096)
    use_mlflow_store(monkeypatch, tmp_path, "uri")
    for uri in (str(home), f"file://{home}"):
        _one_line(["export", uri, "--out", str(tmp_path / "x")], "not an ecgtl model folder")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["export", "models:/", "--out", "x"], "'models:/': not a model URI"),
    (["export", "models:/NAME@", "--out", "x"], "'models:/NAME@': not a model URI"),
    (["evaluate", "--model_uri", "http://127.0.0.1:1/x"], "unknown scheme 'http:'"),
    (["finetune", "--pretrained", "hf:"], "'hf:': names nothing (torch:PATH, hf:ORG/NAME"),
    (["finetune", "--pretrained", "torch:weights.pt"], "torch:weights.pt: no such checkpoint file"),
    (["evaluate", "--model_uri", "torch:weights.pt"], "unknown scheme 'torch:'"),  # only fine-tuning imports
    (["predict", ".", "--model", "runs:/"], "a runs:/ URI names a run and a path"),
])
def test_malformed_model_uris_are_one_line_before_any_work(tmp_path, monkeypatch, no_download, args, message):
    use_mlflow_store(monkeypatch, tmp_path, "uri")
    _one_line(args, message)
    assert not (tmp_path / "mlflow.db").exists()  # no store touched, no run opened


def test_a_pretrained_model_that_does_not_exist_is_refused_before_data_are_prepared(tmp_path, monkeypatch):
    use_mlflow_store(monkeypatch, tmp_path, "uri", cache=True)
    _one_line(["finetune", "--pretrained", "models:/nosuch@champion"], "models:/nosuch@champion: no such model")
    assert {p.name for p in (tmp_path / "cache").iterdir()} <= {"locks"}  # no data prepared
    import mlflow

    assert mlflow.search_runs(search_all_experiments=True).empty  # no run opened


# ------------------------------------------------------------------------------------------------ export
@pytest.fixture
def logged(tmp_path, monkeypatch) -> str:
    pytest.importorskip("onnxscript")
    use_mlflow_store(monkeypatch, tmp_path, "hostile", cache=True)
    return log_untrained_model()


def test_export_checks_its_folder_before_loading_and_never_leaves_a_mixed_export(logged, tmp_path, monkeypatch):
    from ecgtl.export import export
    from ecgtl.files import write_files

    (tmp_path / "file").write_text("x")
    _one_line(["export", logged, "--out", str(tmp_path / "file" / "sub")], "cannot create the output folder")
    blocked = tmp_path / "blocked"
    (blocked / "model.onnx").mkdir(parents=True)
    _one_line(["export", logged, "--out", str(blocked)], "model.onnx: exists and is not a file")
    out = tmp_path / "out"
    old = {p.name: p.read_bytes() for p in export(logged, out)}
    calls = []
    real_replace = os.replace

    def failing_replace(source, target):  # the third rename into the folder fails
        calls.append(target)
        if len([t for t in calls if Path(t).parent == out and not Path(t).name.startswith(".")]) == 3:
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(EcgtlError, match="the files there are as they were"):
        write_files(out, {name: b"new" for name in old})
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # the old export, whole; no temporary left


def test_the_runner_applies_the_input_contract_and_never_prints_nan(logged, tmp_path):
    from ecgtl.export import export

    out = tmp_path / "export"
    export(logged, out)
    cases = {"empty": np.zeros((0, 12, 1000)), "no samples": np.zeros((2, 12, 0)), "ten samples": np.zeros((1, 12, 10)),
             "single record": np.zeros((12, 1000)), "nan": np.full((1, 12, 1000), np.nan),
             "huge": np.full((1, 12, 1000), 3e38), "objects": np.array([[None]], dtype=object)}
    for name, signals in cases.items():
        np.save(tmp_path / "s.npy", signals.astype(np.float32) if signals.dtype != object else signals)
        done = subprocess.run([sys.executable, str(out / "run_onnx.py"), str(out), str(tmp_path / "s.npy")],
                              capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "", (name, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), (name, done.stderr)
    np.save(tmp_path / "s.npy", np.zeros((1, 12, 1000), np.float32))
    done = subprocess.run([sys.executable, str(out / "run_onnx.py"), str(out), str(tmp_path / "s.npy")],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "NaN" not in done.stdout and len(json.loads(done.stdout)["probabilities"]) == 1


# ------------------------------------------------------------------------------------------------ explain
def test_explain_checks_out_and_writes_only_inside_it(logged, tmp_path):
    record = write_cinc(tmp_path / "records", "E00001", digital_ecg(5000, 500))
    (tmp_path / "file").write_text("x")
    _one_line(["explain", str(record), "--model", logged, "--out", str(tmp_path / "file")], "exists and is not a folder")
    _one_line(["explain", str(record), "--model", logged, "--out", str(tmp_path / "file" / "sub")],
              "cannot create the output folder")
    out, outside = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    outside.write_text("keep me")
    (out / "explain-E00001.html").symlink_to(outside)  # planted before the run
    result = CliRunner().invoke(cli, ["explain", str(record), "--model", logged, "--out", str(out), "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert outside.read_text() == "keep me"  # the link was replaced, never written through
    assert not (out / "explain-E00001.html").is_symlink() and "<html" in (out / "explain-E00001.html").read_text()


def test_explain_gives_a_record_named_by_250_characters_a_short_file_name(logged, tmp_path):
    name = "R" * 250
    record = write_cinc(tmp_path / "records", "E00002", digital_ecg(5000, 500), record_line_name=name)
    header = record.read_text().replace("E00002.mat", "E00002.mat")
    record.write_text(header)
    result = CliRunner().invoke(cli, ["explain", str(record), "--model", logged, "--out", str(tmp_path / "o"),
                                      "--steps", "4"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert len(written) == 2 and all(len(n) <= 120 and n.startswith("explain-RRRR") for n in written)


def test_explain_refuses_what_predict_refuses(logged, tmp_path):
    short = write_cinc(tmp_path / "records", "E00003", digital_ecg(500, 500))  # 1 s: shorter than one window
    _one_line(["explain", str(short), "--model", logged, "--out", str(tmp_path / "o")],
              "shorter than one 2.5 s window")


def test_explanations_push_at_most_256_windows_through_the_model_whatever_the_record_length():
    import torch

    from ecgtl.explain import explain_record
    from ecgtl.models import create_model
    from ecgtl.pipeline import MAX_WINDOWS_PER_PASS, InputPipeline

    rng = np.random.default_rng(0)
    record = rng.normal(0, 0.3, (12, 36_000)).astype(np.float32)  # 6 minutes at 100 Hz: 287 windows
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 3).eval()
    passes: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: passes.append(inputs[0].shape[0]))
    for aggregation in ("max", "mean"):
        pipeline = InputPipeline(fs=100.0, aggregation=aggregation).fit_scaler(record[None], np.array([36_000]))
        explain_record(model, pipeline, record, 0, steps=4)
    assert passes and max(passes) <= MAX_WINDOWS_PER_PASS


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize(("args", "message"), [
    (["finetune", "--train.device", "bogus"], "train.device 'bogus' is not a device"),
    (["finetune", "--train.device", "meta"], "train.device 'meta': ecgtl trains on"),
    (["pretrain", "--train.device", "cuda"], "train.device 'cuda': CUDA is not available here"),
    (["pretrain", "--objective", "contrastive", "--temperature", "1e-300"], "temperature must be >= 0.001"),
    (["pretrain", "--objective", "contrastive", "--temperature", "1e-30"], "temperature must be >= 0.001"),
])
def test_training_options_that_cannot_work_are_one_line_before_data_or_a_run(tmp_path, monkeypatch, args, message):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    use_mlflow_store(monkeypatch, tmp_path, "options", cache=True)
    _one_line(args, message)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mlflow.db").exists()


def test_compile_without_a_working_compiler_is_one_line_before_any_work(tmp_path, monkeypatch):
    from torch._inductor import config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
    use_mlflow_store(monkeypatch, tmp_path, "compile", cache=True)
    _one_line(["finetune", "--train.compile", "true"], "train.compile: no working C++ compiler")
    assert not (tmp_path / "cache").exists()


def test_a_non_finite_loss_ends_the_run_failed_and_registers_nothing(tmp_path, monkeypatch):
    import mlflow

    from ecgtl.training.objectives.supervised import Supervised

    loss = Supervised.loss
    monkeypatch.setattr(Supervised, "loss", lambda self, *args: loss(self, *args) * float("nan"))
    use_mlflow_store(monkeypatch, tmp_path, "nan", cache=True)
    _one_line(["pretrain", "--data.spec", "synthetic:ptbxl?n=60&seed=2", "--model", "xresnet1d18",
               "--train.epochs", "2", "--train.batch_size", "16"], "epoch 1: the supervised training loss is nan")
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("nan").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "epoch 1" in runs[0].data.tags["ecgtl.error"] and not client.search_registered_models()


def test_a_class_name_mlflow_refuses_as_a_key_is_logged_under_its_sanitised_name(tmp_path, monkeypatch):
    import mlflow

    from ecgtl import tracking
    from ecgtl.errors import EvaluationError
    from ecgtl.evaluation.report import check_class_names, evaluate_predictions

    rng = np.random.default_rng(0)
    labels = (rng.random((80, 2)) < 0.4).astype(float)
    logits = labels * 2 + rng.normal(0, 1, labels.shape)
    report = evaluate_predictions(labels, logits, labels, logits, ["NORM (sinus)", "LVH+"], n_bootstrap=20)
    use_mlflow_store(monkeypatch, tmp_path, "names")
    tracking.configure()
    with mlflow.start_run() as run:
        tracking.log_evaluation_report(report, png=False)
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    assert "test_auc_NORM__sinus_" in metrics and "test_auc_LVH_" in metrics
    assert list(report.per_class["metric_name"]) == ["NORM__sinus_", "LVH_"]
    with pytest.raises(EvaluationError, match="classes 'A B' and 'A/B' both become the metric name 'A_B'"):
        check_class_names(["A B", "A/B"])


# ------------------------------------------------------------------------------------------------ the rest
def test_inspect_walks_past_a_symlink_to_itself(cinc_folder):
    (cinc_folder / "self").symlink_to("self")
    result = CliRunner().invoke(cli, ["data", "inspect", str(cinc_folder)])
    assert result.exit_code == 0 and "24" in result.output, result.output


def test_the_tuning_sampler_and_storage_raise_no_optuna_warnings(tmp_path):
    from ecgtl.stages.queue import open_storage
    from ecgtl.stages.tune_study import make_sampler

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_sampler(0)
        open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")


def test_names_and_model_cards_from_the_store_cannot_drive_the_terminal(tmp_path, monkeypatch):
    import mlflow

    from ecgtl import tracking

    use_mlflow_store(monkeypatch, tmp_path, "escapes")
    tracking.configure()
    name = "evil\x1b]0;pwned\x07\x1b[2J"
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_text("x", "model/x.txt")
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.update_model_version(name, version.version, description="# card\n\x1b[31mred\x1b[0m \u202etxt.exe")
    client.set_registered_model_alias(name, "champion", version.version)
    listed = CliRunner().invoke(cli, ["models", "list"]).output
    shown = CliRunner().invoke(cli, ["models", "show", f"models:/{name}@champion"]).output
    for output in (listed, shown):
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "evil\\x1b]0;pwned\\x07" in listed and "\\x1b[31mred" in shown and "\\u202etxt.exe" in shown
    assert shown.startswith("# card\n")  # a card's lines stay lines


def test_an_extra_spec_without_readable_records_is_refused(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    write_cinc(empty, "E00001", digital_ecg()).with_suffix(".mat").unlink()  # the only record cannot be read
    use_mlflow_store(monkeypatch, tmp_path, "extra", cache=True)
    _one_line(["pretrain", "--objective", "contrastive", "--data.spec", "synthetic:ptbxl?n=60&seed=2",
               "--extra_specs", f"cinc:{empty}"], "no readable record in its training split")
    import mlflow

    assert mlflow.search_runs(search_all_experiments=True).empty  # refused before a run was opened


def test_the_transfer_matrix_refuses_no_specs_and_plans_one_pretraining_per_dataset():
    from ecgtl.stages.ablation import expand, tasks_of
    from ecgtl.stages.configs import AblationConfig

    for empty in ("|", " | ", "||"):
        with pytest.raises(EcgtlError, match="names no dataset spec"):
            expand(AblationConfig(preset="transfer-matrix", quick=True, seeds=1, sources=empty))
    cells = expand(AblationConfig(preset="transfer-matrix", quick=True, seeds=1,
                                  sources="synthetic:ptbxl?n=80&seed=1|synthetic:ptbxl?seed=1&n=80",
                                  targets="synthetic:g12ec?n=50"))
    pretrainings = [t for t in tasks_of(cells) if t["kind"] == "pretrain"]
    assert len(pretrainings) == 1 and len({c.axes["source"] for c in cells if c.pretrain}) == 1
