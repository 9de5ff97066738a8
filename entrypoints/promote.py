"""MLproject entry point `promote`: hands the parameters to `ecgtl promote` (see `ecgtl promote --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, also when not pip-installed
from ecgtl.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["promote", *sys.argv[1:]])
