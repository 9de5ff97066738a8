"""MLproject entry point `evaluate`: hands the parameters to `ecgtl evaluate` (see `ecgtl evaluate --help`)."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
