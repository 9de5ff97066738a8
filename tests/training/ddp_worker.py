"""What tests/training/test_distributed.py runs under `torchrun` (and as one plain process, the reference):

    python ddp_worker.py fit OUT.pt [--epochs N] [--lr LR] [--objective NAME] [--checkpoint PATH] [--stop-after K]
                                    [--resume]
    python ddp_worker.py score OUT.npy

`fit` trains an xresnet1d18 on a tiny synthetic cache (ECGTL_CACHE_DIR) and rank 0 saves the final weights and
the per-epoch losses; `score` saves the validation logits of an untrained model. One thread per process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout

from ecgtl.data.cache import prepare  # noqa: E402
from ecgtl.data.dataset import valid_lengths  # noqa: E402
from ecgtl.data.prepare_config import PrepareConfig  # noqa: E402
from ecgtl.models import create_model  # noqa: E402
from ecgtl.pipeline import InputPipeline  # noqa: E402
from ecgtl.training import distributed  # noqa: E402
from ecgtl.training.config import TrainConfig  # noqa: E402
from ecgtl.training.loop import fit  # noqa: E402
from ecgtl.training.objectives import objective_class  # noqa: E402
from ecgtl.training.objectives.contrastive import Contrastive  # noqa: E402

SPEC = "synthetic:g12ec?n=80&seed=4"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("fit", "score"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--objective", default="supervised")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with distributed.local_rank_zero_first():
        prepared = prepare(PrepareConfig(spec=SPEC), progress=False)
    train, val = prepared.split("train"), prepared.split("val")
    pipeline = InputPipeline(fs=prepared.fs).fit_scaler(train.signals, valid_lengths(train))
    torch.manual_seed(0)
    model = create_model("xresnet1d18", len(prepared.classes))
    if args.mode == "score":
        logits = pipeline.predict_logits(model, val.signals, valid_lengths(val), batch_records=4)
        if distributed.world().is_main:
            np.save(args.out, logits)
        return 0
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, schedule="gradual", decay=2.0, dropout=0.0,
                         seed=3)
    objective = (Contrastive(probe_every=0) if args.objective == "contrastive"
                 else objective_class(args.objective)())
    result = fit(model, train, val, config, pipeline, objective, progress=False, checkpoint_path=args.checkpoint,
                 resume=args.resume, stop_after_epoch=args.stop_after)
    if distributed.world().is_main:
        torch.save({"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "losses": [h.train_loss for h in result.history], "ranks": distributed.world().size,
                    "pid": os.getpid()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
