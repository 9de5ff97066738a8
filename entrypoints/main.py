"""MLproject entry point `main`: hands the parameters to `ecgtl main` (see `ecgtl main --help`)."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["main", *sys.argv[1:]])
