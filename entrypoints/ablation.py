"""MLproject entry point `ablation`: hands the parameters to `ecgtl ablation` (see `ecgtl ablation --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, also when not pip-installed
from ecgtl.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["ablation", *sys.argv[1:]])
