"""`ecgtl ARGS` under torchrun, where every rank but 0 gets a tracking store that fails on any call (a closed port):
tests/training/test_distributed.py checks that the stage still finishes, so rank 0 alone touched the store. It
also writes each rank's pid beside OUT (`OUT.rankN.pid`) for the test that kills a rank."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout

if __name__ == "__main__":
    out, args = Path(sys.argv[1]), sys.argv[2:]
    rank = os.environ.get("RANK", "0")
    Path(f"{out}.rank{rank}.pid").write_text(str(os.getpid()))
    if rank != "0":
        os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"  # nothing listens: any call fails at once
    from ecgtl.cli import main

    main(args)
