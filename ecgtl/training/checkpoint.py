"""Checkpoints written every epoch (model, optimiser, scheduler, RNG, epoch, history, the fp16 loss scale),
atomically.

They hold only tensors and plain Python values (RNG states as tensors and lists, the fit history as dicts), so
they load with `torch.load(weights_only=True)`: a crafted pickle in the cache folder cannot run code on
`--resume`.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from ecgtl.errors import EcgtlError


def rng_state() -> dict:
    """torch, numpy and Python RNG states as tensors and plain values."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load with `weights_only=True`; anything else than tensors and plain values is refused, not executed."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EcgtlError(f"{path}: not a checkpoint that loads safely ({first_line[:200]})") from None


def restore_training(path: Path, modules: dict, optimizer, scheduler, objective: str) -> dict:
    """Continue a run from its checkpoint: the state of each of `modules` (checkpoint key -> module), the
    optimiser, the scheduler and every RNG. Returns the checkpoint (its `epoch` and `result`). A checkpoint of
    another objective is refused (checkpoints without the key were written by the supervised loop)."""
    state = load_checkpoint(path)
    written_by = state.get("objective", "supervised")
    if written_by != objective:
        raise EcgtlError(f"{path}: a checkpoint of objective {written_by!r}, not {objective!r}; start a new run")
    for key, module in modules.items():
        module.load_state_dict(state[key])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    return state
