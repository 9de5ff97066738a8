"""Stage configs are frozen dataclasses; MLflow params are the same object flattened with dots.

`flatten(config)` -> {"train.lr": 0.01, ...}; `build(cls, flat)` rebuilds a config from (partial) flat
values, converting strings by each field's type.

`reuse_key(config)` says when a finished run can stand in for a new one (`main`, `ablation`) and whether a
resumed run has its original parameters. It hashes what determines the result: the config class, the fields
whose values differ from that class's defaults, and `REUSE_VERSION`. So adding a field whose default keeps
the old behaviour leaves every finished run's key valid; changing what a default does must bump
`REUSE_VERSION` (then nothing old is reused). Fields that cannot change a result (`NOT_IN_REUSE_KEY`: where
a run shows progress, how many parallel jobs run it, how batches reach the device) are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any

from ecgtl.errors import EcgtlError


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def field_types(cls: type, prefix: str = "") -> dict[str, type]:
    """Flat name -> Python type of every leaf field of a config class."""
    hints = typing.get_type_hints(cls)
    types: dict[str, type] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            types.update(field_types(kind, f"{prefix}{field.name}."))
        else:
            types[f"{prefix}{field.name}"] = kind
    return types


def _convert(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, str) or kind is str:
        return kind(value) if kind in (int, float) and not isinstance(value, bool) else value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            return int(float(value))
        return kind(value)
    except ValueError:
        raise EcgtlError(f"parameter {name}: cannot read {value!r} as {kind.__name__}") from None


def build(cls: type, flat: dict[str, Any], base: Any | None = None) -> Any:
    """A `cls` instance from flat dotted values over `base` (default: the class defaults)."""
    base = base if base is not None else cls()
    types = field_types(cls)
    unknown = set(flat) - set(types)
    if unknown:
        raise EcgtlError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    return _replace(base, {k: _convert(v, types[k], k) for k, v in flat.items()})


def _replace(config: Any, flat: dict[str, Any]) -> Any:
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            nested = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{field.name}.")}
            if nested:
                changes[field.name] = _replace(value, nested)
        elif field.name in flat:
            changes[field.name] = flat[field.name]
    return dataclasses.replace(config, **changes)


REUSE_VERSION = "2"
NOT_IN_REUSE_KEY = frozenset({"progress", "jobs", "system_metrics", "explain_examples", "device_cache", "prefetch"})


def reuse_key(config: Any) -> str:
    """A 16-hex-digit key of what determines a run's result (see the module docstring)."""
    defaults = flatten(type(config)())
    changed = {key: value for key, value in flatten(config).items()
               if key.rsplit(".", 1)[-1] not in NOT_IN_REUSE_KEY and defaults.get(key) != value}
    payload = {"config": type(config).__name__, "changed": changed, "version": REUSE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed interval for a number option (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def describe(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {format_number(self.low)}"
        high = "" if self.high is None else f"<= {format_number(self.high)}"
        return " and ".join(part for part in (low, high) if part)


# Seeds are numpy's: non-negative and below 2**32.
SEED_RANGE = Range(0, 2 ** 32 - 1)


def format_number(value: float) -> str:
    """Whole numbers in full (4294967295, not 4.29497e+09), others as %g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def check_numbers(config: Any, prefix: str = "") -> None:
    """The one validation layer for numbers: every float of a config (nested ones too) is finite, and every
    field a config class lists in its `RANGES` lies in its range. Raises one line naming the option."""
    ranges: dict[str, Range] = getattr(type(config), "RANGES", {})
    for field in dataclasses.fields(config):
        value, key = getattr(config, field.name), f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            check_numbers(value, f"{key}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise EcgtlError(f"{key} must be a finite number, got {value}")
        allowed = ranges.get(field.name)
        if allowed is not None and not allowed.contains(value):
            raise EcgtlError(f"{key} must be {allowed.describe()}, got {format_number(value)}")


def validate_parts(config: Any) -> Any:
    """`check_numbers(config)`, then the `validate()` of every nested config (data, train, ...). Returns it."""
    check_numbers(config)
    for field in dataclasses.fields(config):
        part = getattr(config, field.name)
        if dataclasses.is_dataclass(part) and hasattr(part, "validate"):
            part.validate()
    return config
