"""ecgtl's runtime requirements, read from the one list that declares them (`pyproject.toml`'s
`[project] dependencies`): a served model's environment is built from them, so there is no second copy."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def runtime_requirements() -> list[str]:
    """The `[project] dependencies` of a source checkout (current even before a reinstall), else those of the
    installed distribution (without extras)."""
    if PYPROJECT.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: the installed metadata below
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == "ecgtl":
                return list(project["dependencies"])
    return [r for r in metadata.requires("ecgtl") or [] if "extra ==" not in r]
