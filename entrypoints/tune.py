"""MLproject entry point `tune`: hands the parameters to `ecgtl tune` (see `ecgtl tune --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, also when not pip-installed
from ecgtl.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["tune", *sys.argv[1:]])
