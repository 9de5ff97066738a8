"""What a cache is built from (light: the CLI and the stage configs use it without numpy or pandas).

`stages.configs.DataConfig` names a cache with these fields (plus how a stage reads it) and takes its defaults
from here, so each default is typed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ecgtl.config import Range
from ecgtl.inputs import FS_RANGE, PREPARE_RANGES

DEFAULT_SOURCE = "synthetic:ptbxl?n=3000&seed=0"
DEFAULT_TARGET = "synthetic:g12ec?n=1500&seed=0"


@dataclass(frozen=True)
class PrepareConfig:
    """What a cache is built from; hashed (with the source fingerprint) into the cache key."""

    spec: str = DEFAULT_SOURCE
    fs: float = 100.0
    length_s: float = 10.0
    label_set: str = "shared18"
    equivalences: bool = True
    split_seed: int = 0
    record_fs: float = 0.0  # > 0: records first brought to this rate, then to fs (sampling-rate robustness)

    RANGES: ClassVar[dict[str, Range]] = {**PREPARE_RANGES, "record_fs": Range(0, FS_RANGE[1])}
