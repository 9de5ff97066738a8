"""MLproject entry point `distributed`: a stage under torchrun on this machine,
`torchrun --standalone --nproc_per_node NPROC -m ecgtl STAGE OPTIONS...` (see `ecgtl STAGE --help`)."""

import argparse
import shlex
import sys

from torch.distributed.run import main as torchrun

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--stage", choices=("pretrain", "finetune", "scratch", "main"), required=True)
    parser.add_argument("--options", default="")
    args = parser.parse_args()
    sys.exit(torchrun(["--standalone", "--nproc_per_node", str(args.nproc), "-m", "ecgtl", args.stage,
                       *shlex.split(args.options)]))
