"""Reuse of finished stage runs, shared by main, ablation and tune.

Like MLflow's multistep_workflow `_get_or_run`: a stage whose config has the same reuse key
(`config.reuse_key`: what determines the result) as a FINISHED run of that stage in the experiment is not run
again; its run is returned instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ecgtl import runs, tracking
from ecgtl.config import reuse_key
from ecgtl.errors import EcgtlError
from ecgtl.stages.common import StageResult


def finished_run(stage: str, config) -> str | None:
    """The FINISHED run of `stage` with `config`'s reuse key, or None."""
    return tracking.find_finished_run(stage, reuse_key(config))


def reuse_or_run(stage: str, config, run: Callable[[], StageResult]) -> StageResult:
    """A FINISHED run of `stage` with the same reuse key in this experiment, else `run()`."""
    found = finished_run(stage, config)
    if found:
        tags, metrics = tracking.run_info(found)
        print(f"{stage}: reusing finished run {found} (same parameters)", file=sys.stderr)
        return StageResult(found, tags.get(runs.MODEL_URI), None, metrics, reused=True)
    return run()


def pretrained_uri(pretrain_key: str, wait_s: float = 0.0) -> str:
    """The model URI of the FINISHED pretraining with this reuse key (waiting up to `wait_s` for a worker that
    is still training it)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = tracking.find_finished_run(runs.PRETRAIN, pretrain_key)
        if found:
            return tracking.run_info(found)[0][runs.MODEL_URI]
        if time.monotonic() >= deadline:
            raise EcgtlError(f"no finished pretraining with reuse key {pretrain_key} (it failed or never ran)")
        time.sleep(2)
