"""Where ecgtl keeps files it makes (a leaf module: the data layers import it, it imports nothing of ecgtl)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$ECGTL_CACHE_DIR`, else `$XDG_CACHE_HOME/ecgtl`, else `~/.cache/ecgtl`."""
    if os.environ.get("ECGTL_CACHE_DIR"):
        return Path(os.environ["ECGTL_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ecgtl"
