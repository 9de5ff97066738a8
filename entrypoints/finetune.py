"""MLproject entry point `finetune`: hands the parameters to `ecgtl finetune` (see `ecgtl finetune --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, also when not pip-installed
from ecgtl.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["finetune", *sys.argv[1:]])
