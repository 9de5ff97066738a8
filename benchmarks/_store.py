"""The output folder of a benchmark: its own MLflow store and cache, so a benchmark never touches the user's."""

from __future__ import annotations

import os
from pathlib import Path


def use_out_folder(out: Path) -> Path:
    """Create `out`, work from it (MLflow's sqlite store writes artifacts relative to the working folder) and
    point MLflow and ecgtl's cache into it unless the environment names others. Returns it resolved."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    os.environ.setdefault("ECGTL_CACHE_DIR", str(out / "cache"))
    return out
