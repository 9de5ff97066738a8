"""MLproject entry point `finetune`: hands the parameters to `ecgtl finetune` (see `ecgtl finetune --help`)."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["finetune", *sys.argv[1:]])
