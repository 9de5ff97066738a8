"""Every number and file a user gives is checked before any work, with one line naming the option or file:
non-finite and out-of-range numbers, non-numeric axis values, YAML that is not a mapping, not UTF-8, a
directory, or full of aliases, devices named as files, absurd synthetic sizes."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from ecgtl.cli import cli


def _one_line_error(args, message, tmp_path):
    """Exit 2, one `error:` line containing `message`, no traceback, nothing written in the MLflow store."""
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}"}
        result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "store.db").exists()  # refused before any run was opened
    return errors[0]


@pytest.mark.parametrize(("args", "message"), [
    (["finetune", "--train.lr", "nan"], "train.lr must be a finite number, got nan"),
    (["finetune", "--train.lr", "inf"], "train.lr must be a finite number, got inf"),
    (["finetune", "--train.decay", "nan"], "train.decay must be a finite number"),
    (["finetune", "--train.head_lr_mult", "nan"], "train.head_lr_mult must be a finite number"),
    (["finetune", "--train.crop_s", "nan"], "train.crop_s must be a finite number"),
    (["finetune", "--data.fs", "nan"], "data.fs must be a finite number"),
    (["finetune", "--data.fs", "1e9"], "data.fs must be >= 50 and <= 16000, got 1000000000"),
    (["pretrain", "--train.lr", "-1"], "train.lr must be > 0 and <= 10, got -1"),
    (["pretrain", "--data.fraction", "0"], "data.fraction must be > 0 and <= 1, got 0"),
    (["main", "--finetune.train.weight_decay", "inf"], "finetune.train.weight_decay must be a finite number"),
    (["promote", "--margin", "nan"], "margin must be a finite number"),
    (["tune", "--timeout", "inf"], "timeout must be a finite number"),
    (["ablation", "--axis", "seed=x"], "axis seed: cannot read 'x' as a whole number"),
    (["ablation", "--axis", "seed=1.5"], "axis seed: cannot read '1.5' as a whole number"),
    (["ablation", "--axis", "target_fraction=nan"], "axis target_fraction: must be a finite number, got nan"),
    (["ablation", "--axis", "seed=1e10"], "axis seed: must be >= 0 and <= 4294967295, got 10000000000"),
    (["ablation", "--axis", "fs=20"], "axis fs: must be >= 50 and <= 16000, got 20"),
    (["ablation", "--axis", "init=warm"], "axis init: must be one of pretrained, scratch, linear_probe, random_frozen"),
    (["pretrain", "--temperature", "1e-30"], "temperature must be >= 0.001 and <= 10, got 1e-30"),
])
def test_bad_numbers_are_one_line_before_any_run(tmp_path, args, message):
    _one_line_error(args, message, tmp_path)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--fs", "nan", "fs must be a finite number, got nan"), ("--fs", "inf", "fs must be a finite number"),
    ("--fs", "1e9", "fs must be >= 50 and <= 16000"), ("--length", "inf", "length_s must be a finite number"),
])
def test_prepare_refuses_bad_numbers_before_reading(cinc_folder, tmp_path, option, value, message):
    _one_line_error(["data", "prepare", f"cinc:{cinc_folder}", "--cache-dir", str(tmp_path / "c"), option, value],
                    message, tmp_path)
    assert not (tmp_path / "c").exists()


def test_absurd_synthetic_sizes_are_refused_at_once(tmp_path):
    started = time.perf_counter()
    _one_line_error(["data", "prepare", "synthetic:g12ec?n=10000000000&seed=0", "--cache-dir", str(tmp_path / "c")],
                    "n must lie in 1..100000 records, got 10000000000", tmp_path)
    _one_line_error(["data", "prepare", "synthetic:g12ec?n=10&seed=-3", "--cache-dir", str(tmp_path / "c")],
                    "seed must be >= 0 and <= 4294967295", tmp_path)
    assert time.perf_counter() - started < 30  # nothing was allocated or generated


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


@pytest.mark.parametrize(("content", "message"), [
    ("- lr\n- decay\n", "a search space file is a mapping"),
    ("3\n", "a search space file is a mapping"),
    (b"lr: \xff\xfe\n", "search space file is not UTF-8"),
    (BILLION_LAUGHS, "uses YAML aliases"),
    ("lr: {low: 1}\n", "search space values are a number, a word or a flat list"),
    ("lr: [1e-4, 1e-2\n", "search space file is not YAML"),
])
def test_space_files_that_are_not_a_flat_mapping_are_one_line(tmp_path, content, message):
    path = tmp_path / "space.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _one_line_error(["tune", "--space_file", str(path)], message, tmp_path)


def test_named_files_that_are_directories_or_devices_are_refused_at_once(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_error(["tune", "--space_file", str(folder)], "search space file is not a regular file", tmp_path)
    _one_line_error(["ablation", "--grid_file", str(folder)], "grid file is not a regular file", tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.perf_counter()
    _one_line_error(["ablation", "--grid_file", str(fifo)], "grid file is not a regular file", tmp_path)
    _one_line_error(["evaluate", "--challenge_weights", "/dev/zero"], "/dev/zero: weights table is not a regular file",
                    tmp_path)
    assert time.perf_counter() - started < 10  # never blocked on the FIFO nor read /dev/zero


@pytest.mark.parametrize(("content", "message"), [
    ("axes:\n  target_fraction: [abc]\n", "axis target_fraction: cannot read 'abc' as float"),
    ("axes:\n  seed: [1e10]\n", "axis seed: must be >= 0 and <= 4294967295"),
    ("axes:\n  seed: [[1, 2]]\n", "axis seed: expected a list of values"),
    ("- 1\n", "expected a mapping with 'axes"),
    (BILLION_LAUGHS, "grid file uses YAML aliases"),
])
def test_grid_files_with_bad_values_are_one_line(tmp_path, content, message):
    path = tmp_path / "grid.yaml"
    path.write_text(content)
    _one_line_error(["ablation", "--grid_file", str(path)], message, tmp_path)


def test_yaml_aliases_are_refused_before_they_expand():
    """The shared reader refuses the alias, so the 9**9-element expansion never happens."""
    import tempfile

    from ecgtl.errors import EcgtlError
    from ecgtl.files import load_yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(BILLION_LAUGHS)
    started = time.perf_counter()
    with pytest.raises(EcgtlError, match="uses YAML aliases \\(line 2\\)"):
        load_yaml(handle.name, "grid file")
    os.unlink(handle.name)
    assert time.perf_counter() - started < 5


# ------------------------------------------------------------------------------ damaged trees and files
def test_a_folder_nested_1200_deep_is_one_line_for_inspect_and_predict(tmp_path):
    deep = tmp_path / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(1200):  # relative to each level, as a script would make it (the whole path is ~2.5 kB)
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("x.hea", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    try:
        _one_line_error(["data", "inspect", str(deep)], "folders nested more than 64 deep", tmp_path)
        _one_line_error(["predict", str(deep), "--model", "models:/none@champion"],
                        "folders nested more than 64 deep", tmp_path)
    finally:
        _remove_deep_tree(deep, 1200)


def _remove_deep_tree(top, depth):
    """Bottom-up with directory descriptors: shutil.rmtree (and pytest's cleanup) recurse and fail at this depth."""
    fds = [os.open(top, os.O_RDONLY)]
    for _ in range(depth):
        fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
    os.unlink("x.hea", dir_fd=fds[-1])
    for level in range(depth, 0, -1):
        os.close(fds[level])
        os.rmdir("d", dir_fd=fds[level - 1])
    os.close(fds[0])


def test_symlink_loops_end_and_shallow_trees_are_found_sorted(tmp_path):
    from ecgtl.files import find_files

    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").mkdir(parents=True)
    for name in ("b/2.hea", "a/x/1.hea", "a/3.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert find_files(tmp_path, ".hea") == [tmp_path / "a/x/1.hea", tmp_path / "b/2.hea"]


def test_a_bundle_without_weights_is_one_line(tmp_path):
    import json

    from ecgtl.errors import EcgtlError
    from ecgtl.inference import BUNDLE_JSON, load_bundle

    bundle = tmp_path / "artifacts" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / BUNDLE_JSON).write_text(json.dumps({"architecture": "xresnet1d18", "classes": ["A"], "label_set": "x",
                                                  "pipeline": {"fs": 100, "crop_s": 2.5, "stride_s": 1.25}}))
    with pytest.raises(EcgtlError, match="the model bundle has no weights.pt"):
        load_bundle(tmp_path)
    (bundle / BUNDLE_JSON).write_text("{not json")
    with pytest.raises(EcgtlError, match="not a readable ecgtl model description"):
        load_bundle(tmp_path)
