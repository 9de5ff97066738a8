"""MLproject entry point `prepare`: hands the parameters to `ecgtl data prepare`."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["data", "prepare", *sys.argv[1:]])
