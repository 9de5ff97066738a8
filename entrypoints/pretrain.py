"""MLproject entry point `pretrain`: hands the parameters to `ecgtl pretrain` (see `ecgtl pretrain --help`)."""

import sys

from ecgtl.cli import main

if __name__ == "__main__":
    main(["pretrain", *sys.argv[1:]])
