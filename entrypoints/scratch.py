"""MLproject entry point `scratch`: hands the parameters to `ecgtl scratch` (see `ecgtl scratch --help`)."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["scratch", *sys.argv[1:]])
