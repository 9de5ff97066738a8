"""The README is a door and nothing in it is stale: every command it shows parses (the command exists and
accepts each option shown; MLproject entry points and their parameters exist; scripts exist). The manual builds
with `mkdocs build --strict` (broken links and missing pages fail), its CLI reference generated from the click
app."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from ecgtl.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(text: str) -> list[list[str]]:
    """Every command line of the bash blocks and the inline `...` spans that start with a known program."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split("  #")[0] for line in joined.splitlines() if line.strip()]
    lines += re.findall(r"`((?:ecgtl|mlflow run|torchrun|python benchmarks/)[^`]*)`", text)
    commands = []
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part.strip())
            if words and words[0] in ("ecgtl", "mlflow", "torchrun", "python"):
                commands.append(words)
    return commands


def _check_ecgtl(words: list[str], line: str) -> None:
    command, used = cli, []
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        assert words[0] in command.commands, f"{line}: no command {words[0]!r}"
        command, words = command.commands[words[0]], words[1:]
        used.append(command.name)
    options = {opt for param in command.params for opt in param.opts}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in options | {"--help"}, f"{line}: `ecgtl {' '.join(used)}` has no {word}"


def test_the_readme_is_a_door():
    assert len(README.splitlines()) <= 220
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / page).is_file(), page


def test_every_command_the_readme_shows_parses():
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    checked = 0
    for words in _commands(README):
        line = " ".join(words)
        if words[0] == "ecgtl":
            _check_ecgtl(words[1:], line)
        elif words[0] == "torchrun":
            _check_ecgtl(words[words.index("-m") + 2:], line)
        elif words[:2] == ["mlflow", "run"]:
            entry = words[words.index("-e") + 1]
            assert entry in entry_points, f"{line}: no entry point {entry}"
            for position, word in enumerate(words):
                if word == "-P":
                    assert words[position + 1].split("=")[0] in entry_points[entry]["parameters"], line
        elif words[0] == "python" and words[1].startswith("benchmarks/"):
            assert (ROOT / words[1]).is_file(), line
        else:
            continue
        checked += 1
    assert checked >= 12  # the quick start, the lifecycle, the study's commands


def test_a_stale_option_in_the_readme_is_caught():
    with pytest.raises(AssertionError, match="has no --train.learning_rate"):
        _check_ecgtl(["finetune", "--train.learning_rate", "0.1"], "ecgtl finetune --train.learning_rate 0.1")


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install -e '.[dev]')")
def test_the_manual_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={"NO_MKDOCS_2_WARNING": "1",
                                                                            "PATH": str(Path(sys.executable).parent)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cli_page = (tmp_path / "site" / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "--train.schedule" in cli_page and "chain_thaw" in cli_page  # generated from the click app
    assert (tmp_path / "site" / "reference" / "api.html").read_text(encoding="utf-8").count("fit") > 3
