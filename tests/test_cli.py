"""The `ecgtl` command line: help, inspect, prepare, one-line errors, and the real shared samples."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ecgtl.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_program_skips_the_final_collection_and_still_runs_exit_handlers(tmp_path):
    """`main` freezes the objects at exit (2-3 s of garbage collection after a run, benchmarks/bench_quickstart.py);
    exit handlers registered before and during the command still run."""
    import subprocess
    import sys

    marker = tmp_path / "handlers.txt"
    code = ("import atexit, gc, sys\n"
            f"record = lambda what: open({str(marker)!r}, 'a').write(what + '\\n')\n"
            "atexit.register(lambda: record(f'before frozen={gc.get_freeze_count() > 0}'))\n"
            "from ecgtl.cli import cli, main\n"
            "cli.add_command(__import__('click').command('later')(lambda: atexit.register(record, 'during')))\n"
            "main(sys.argv[1:])\n")
    done = subprocess.run([sys.executable, "-c", code, "later"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert marker.read_text().splitlines() == ["during", "before frozen=True"]


def test_help_lists_commands():
    listed = set(cli.commands)
    assert {"data", "pretrain", "finetune", "scratch", "evaluate", "main", "ablation", "ablation-worker", "tune",
            "tune-worker", "promote", "predict", "dashboard", "models"} <= listed
    assert {"inspect", "prepare", "download", "synth", "plot"} <= set(cli.commands["data"].commands)


@pytest.mark.parametrize("command", ["pretrain", "finetune", "scratch", "evaluate", "main", "ablation", "tune",
                                     "promote"])
def test_every_stage_command_is_built_from_its_config(command):
    """One option per flattened config field, both spellings, its default in the help: nothing retyped."""
    from ecgtl.config import flatten
    from ecgtl.stages import configs

    config_class = {"pretrain": configs.PretrainConfig, "finetune": configs.FinetuneConfig,
                    "scratch": configs.FinetuneConfig, "evaluate": configs.EvaluateConfig,
                    "main": configs.MainConfig, "ablation": configs.AblationConfig, "tune": configs.TuneConfig,
                    "promote": configs.PromoteConfig}[command]
    params = {name: param for param in cli.commands[command].params for name in param.opts}
    for field, default in flatten(config_class()).items():
        assert {f"--{field}", f"--{field.replace('_', '-')}"} <= set(params), field
        assert f"default: {default!r}" in params[f"--{field}"].help


def test_version():
    from ecgtl import __version__

    result = _run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"ecgtl, version {__version__}"


def test_promote_options_reach_the_config(monkeypatch):
    import ecgtl.stages.promote as promote_module
    from ecgtl.stages.configs import PromoteConfig

    seen = []

    class Decision:
        def describe(self) -> str:
            return "kept"

    monkeypatch.setattr(promote_module, "promote", lambda config: seen.append(config) or Decision())
    result = _run("promote", "--margin", "0.02", "--ece-tolerance", "0.5", "--dry-run")
    assert result.exit_code == 0 and result.output.strip() == "kept (dry run: nothing changed)"
    assert seen == [PromoteConfig(margin=0.02, ece_tolerance=0.5, dry_run=True)]


def test_inspect_cinc_folder(cinc_folder):
    next(cinc_folder.rglob("E00002.mat")).write_bytes(b"")
    result = _run("data", "inspect", str(cinc_folder))
    assert result.exit_code == 0
    assert "CinC" in result.output
    assert "23 readable of 24 listed, 1 skipped" in result.output
    assert "E00002.mat: empty payload file" in result.output
    assert "500 Hz: 23" in result.output
    strict = CliRunner().invoke(cli, ["data", "inspect", "--strict", str(cinc_folder)])
    assert strict.exit_code == 2 and "E00002.mat: empty payload file" in strict.output


def test_inspect_ptbxl_folder_reports_missing_records(ptbxl_folder):
    result = _run("data", "inspect", f"ptbxl:{ptbxl_folder}")
    assert result.exit_code == 0
    assert "PTB-XL native" in result.output and "29 readable of 30 listed, 1 skipped" in result.output
    assert "00007_lr.hea: record file not found" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "inspect", "/no/such/folder"], "/no/such/folder: no such folder"),
        (["data", "prepare", "cinc:/no/such/folder"], "/no/such/folder: dataset path does not exist"),
        (["data", "inspect", "--label-set", "bogus", "{cinc}"], "unknown label set 'bogus'"),
    ],
)
def test_bad_input_is_one_line_without_traceback(cinc_folder, tmp_path, args, message):
    args = [a.replace("{cinc}", str(cinc_folder)) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def test_wrong_layout_is_one_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path)])
    assert result.exit_code == 2 and "neither PTB-XL layout" in result.output


def test_prepare_prints_location_and_reuses(cinc_folder, tmp_path):
    args = ["data", "prepare", f"cinc:{cinc_folder}", "--cache-dir", str(tmp_path)]
    first, second = _run(*args), _run(*args)
    assert first.exit_code == 0 and str(tmp_path) in first.output
    location = [line for line in first.output.splitlines() if line.startswith("cache")]
    assert location == [line for line in second.output.splitlines() if line.startswith("cache")]


def test_inspect_real_cinc_samples(shared_samples):
    result = _run("data", "inspect", str(shared_samples / "cinc2021-smoke"))
    assert result.exit_code == 0
    assert "70 readable of 70 listed, 0 skipped" in result.output
    assert "1000 Hz: 10" in result.output and "500 Hz: 60" in result.output
    for origin in ("Georgia 10", "PTB 10", "PTB-XL 10", "CPSC 10", "CPSC-Extra 10", "Chapman-Shaoxing/Ningbo 20"):
        assert origin in result.output
    assert "CRBBB" in result.output


def test_inspect_real_ptbxl_excerpt(shared_samples):
    result = _run("data", "inspect", str(shared_samples / "ptbxl-excerpt"))
    assert result.exit_code == 0
    assert "PTB-XL native" in result.output and "1 readable of 64 listed, 63 skipped" in result.output


def test_inspect_and_prepare_survive_hostile_files(cinc_folder, tmp_path):
    import os

    (cinc_folder / "g1" / "Z00001.hea").symlink_to("/dev/zero")
    os.mkfifo(cinc_folder / "g1" / "Z00002.hea")
    bad_fs = next(cinc_folder.rglob("E00003.hea"))
    bad_fs.write_text(bad_fs.read_text().replace(" 500 5000 ", " 0.001 5000 ", 1))
    result = CliRunner().invoke(cli, ["data", "inspect", str(cinc_folder)])
    assert result.exit_code == 0, result.output
    assert "23 readable of 26 listed, 3 skipped" in result.output
    assert "Z00001.hea: header is not a regular file" in result.output
    assert "Z00002.hea: header is not a regular file" in result.output
    assert "sampling frequency 0.001 Hz outside" in result.output
    prepared = CliRunner().invoke(cli, ["data", "prepare", f"cinc:{cinc_folder}", "--cache-dir", str(tmp_path)])
    assert prepared.exit_code == 0 and "3 skipped" in prepared.output
    strict = CliRunner().invoke(cli, ["data", "prepare", "--strict", f"cinc:{cinc_folder}", "--cache-dir",
                                      str(tmp_path / "strict")])
    assert strict.exit_code == 2 and "Traceback" not in strict.output


def test_importing_the_cli_does_not_import_torch_pandas_or_the_stages():
    """`ecgtl --help` must answer at once: options come from the config classes, stages load when they run."""
    import subprocess
    import sys

    code = ("import sys, ecgtl.cli; heavy = [m for m in ('torch', 'pandas', 'sklearn', 'mlflow', 'optuna', 'plotly', "
            "'scipy', 'ecgtl.stages.finetune', 'ecgtl.training.loop') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert "--train.lr" in CliRunner().invoke(cli, ["finetune", "--help"]).output  # options still generated


def test_timing_phases_count_nested_time_once():
    import time

    from ecgtl import timing

    timing.reset()
    with timing.phase("prepare"):
        time.sleep(0.05)
        with timing.phase("generation"):
            time.sleep(0.1)
    totals = timing.totals()
    assert 0.09 <= totals["generation"] < 0.2 and 0.04 <= totals["prepare"] < 0.09  # not 0.15: generation is its own
    assert "generation" in timing.table() and "other" in timing.table()


@pytest.mark.parametrize("args", [["tune", "--n-trials", "0"], ["tune", "--n_trials", "0"]])
def test_options_take_the_underscore_and_the_dash_spelling(args):
    """`ecgtl tune --n-trials 4` used to be "No such option"; both spellings reach the same config field."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "error: n_trials must be >= 1 and <= 1000000, got 0" in result.output
    assert "No such option" not in result.output
    help_text = CliRunner().invoke(cli, ["finetune", "--help"]).output
    assert "--train.batch_size, --train.batch-size" in help_text


def _commands(command, path=("ecgtl",)):
    import click

    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_option_of_every_command_says_what_it_does():
    import click

    for path, command in _commands(cli):
        for param in command.params:
            if isinstance(param, click.Option):
                text = (param.help or "").split("default:")[0].strip()
                assert text, f"{path} {param.opts[0]} has no help text"


@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate", "main", "ablation", "tune"])
def test_every_enumerated_option_shows_its_declared_choices(command):
    """The choices come from the config field's declaration (Literal / OneOf): the CLI's Choice is that tuple."""
    import click

    from ecgtl.config import choices, field_types
    from ecgtl.stages import configs

    config_class = {"pretrain": configs.PretrainConfig, "finetune": configs.FinetuneConfig,
                    "evaluate": configs.EvaluateConfig, "main": configs.MainConfig,
                    "ablation": configs.AblationConfig, "tune": configs.TuneConfig}[command]
    params = {param.opts[0]: param for param in cli.commands[command].params}
    help_text = " ".join(CliRunner().invoke(cli, [command, "--help"], terminal_width=400).output.split())
    enumerated = {name: choices(kind) for name, kind in field_types(config_class).items() if choices(kind)}
    assert enumerated
    for name, values in enumerated.items():
        assert isinstance(params[f"--{name}"].type, click.Choice) and tuple(params[f"--{name}"].type.choices) == values
        assert f"[{'|'.join(values)}]" in help_text, name


@pytest.mark.parametrize("args, valid", [
    (["finetune", "--train.schedule", "nonsense"], ("full", "two_stage", "gradual", "chain_thaw", "frozen")),
    (["pretrain", "--objective", "jepa"], ("supervised", "contrastive")),
    (["tune", "--pruner", "sometimes"], ("auto", "hyperband", "successive_halving", "median", "none")),
])
def test_a_value_outside_an_options_choices_is_one_line_naming_every_valid_one(args, valid):
    result = CliRunner().invoke(cli, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(f"'{value}'" in lines[0] for value in valid) and args[1] in lines[0]
