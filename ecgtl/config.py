"""Stage configs are frozen dataclasses; MLflow params are the same object flattened with dots.

`flatten(config)` -> {"train.lr": 0.01, ...}; `build(cls, flat)` rebuilds a config from (partial) flat
values, converting strings by each field's type.

Every option is declared once, on its config field:
- an enumerated option's type is `Literal["a", "b"]`, or `Annotated[str, OneOf(REGISTRY)]` when its values are the
  names in a registry that may grow (objectives); `choices(kind)` reads either, and from it come validation
  (`check_options`: one message naming the valid values), the CLI's `click.Choice`, ablation-axis parsing and
  the MLproject parameter docs;
- a number's allowed interval is in its class's `RANGES`, its one-line help in its class's `HELP`.

`reuse_key(config)` says when a finished run can stand in for a new one (`main`, `ablation`) and whether a
resumed run has its original parameters. It hashes what determines the result: the config class, the effective
value of every field (defaults included, so that changing a default never reuses runs made with the old one)
and `REUSE_VERSION`. Fields that cannot change a result (`NOT_IN_REUSE_KEY`: where a run shows progress, how
many parallel jobs run it, how batches reach the device, how many records a report explains) are left out.
Adding a field changes every key: runs made before it did not choose its value, so they are not reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

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
    hints = typing.get_type_hints(cls, include_extras=True)
    types: dict[str, type] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            types.update(field_types(kind, f"{prefix}{field.name}."))
        else:
            types[f"{prefix}{field.name}"] = kind
    return types


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The values of an option that are the names in a registry (`Annotated[str, OneOf(REGISTRY)]`), read when
    asked, so that a name registered later (a plugin, a test) is valid too."""

    registry: Mapping[str, Any] | Iterable[str]

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.registry)


def choices(kind: Any) -> tuple[str, ...] | None:
    """The values an option declared as `Literal[...]` or `Annotated[str, OneOf(...)]` takes (None: any value)."""
    if typing.get_origin(kind) is Literal:
        return tuple(typing.get_args(kind))
    if typing.get_origin(kind) is Annotated:
        return next((meta.values for meta in kind.__metadata__ if isinstance(meta, OneOf)), None)
    return None


def value_type(kind: Any) -> type:
    """The Python type an option's values have (`str` for a declared choice)."""
    if typing.get_origin(kind) is Literal:
        return type(typing.get_args(kind)[0])
    if typing.get_origin(kind) is Annotated:
        return typing.get_args(kind)[0]
    return kind


def check_choice(name: str, value: Any, allowed: Any, error: type[EcgtlError] = EcgtlError) -> None:
    """The one check of an enumerated option: `allowed` is its declared type (`Literal`, `OneOf`) or the values;
    `error` the `EcgtlError` subclass the caller's domain raises (`DatasetError`, `EvaluationError`)."""
    values = choices(allowed)
    values = tuple(allowed) if values is None else values
    if value not in values:
        raise error(f"{name} must be one of {', '.join(map(str, values))}; got {value!r}")


def _convert(value: Any, kind: type, name: str) -> Any:
    kind = value_type(kind)
    if not isinstance(value, str) or kind is str:
        if kind is int and isinstance(value, float):
            if not value.is_integer():
                raise EcgtlError(f"parameter {name}: {value!r} is not a whole number")
            return int(value)
        return kind(value) if kind in (int, float) and not isinstance(value, bool) else value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            number = float(value)
            if not number.is_integer():  # `--train.epochs 2.5` is a mistake, not 2
                raise ValueError(value)
            return int(number)
        return kind(value)
    except (ValueError, OverflowError):
        what = "a whole number" if kind is int else kind.__name__
        raise EcgtlError(f"parameter {name}: cannot read {value!r} as {what}") from None


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


REUSE_VERSION = "3"  # 3: every field's effective value (2 hashed only the fields that differed from defaults)
NOT_IN_REUSE_KEY = frozenset({"progress", "jobs", "system_metrics", "explain_examples", "device_cache", "prefetch"})


def reuse_key(config: Any) -> str:
    """A 16-hex-digit key of what determines a run's result (see the module docstring)."""
    values = {key: value for key, value in flatten(config).items()
              if key.rsplit(".", 1)[-1] not in NOT_IN_REUSE_KEY}
    payload = {"config": type(config).__name__, "values": values, "version": REUSE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def field_help(cls: type, prefix: str = "") -> dict[str, str]:
    """Flat name -> the one-line help of every leaf field of a config class (from each class's `HELP`)."""
    texts: dict[str, str] = {}
    own = getattr(cls, "HELP", {})
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            texts.update(field_help(hints[field.name], f"{prefix}{field.name}."))
        elif field.name in own:
            texts[f"{prefix}{field.name}"] = own[field.name]
    return texts


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed interval for a number option (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed
    high_open: bool = False  # high itself not allowed

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {format_number(self.low)}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='} {format_number(self.high)}"
        return " and ".join(part for part in (low, high) if part)


# Seeds are numpy's: non-negative and below 2**32.
SEED_RANGE = Range(0, 2 ** 32 - 1)


def format_number(value: float) -> str:
    """Whole numbers in full (4294967295, not 4.29497e+09), others as %g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def check_options(config: Any, prefix: str = "") -> None:
    """The one validation layer of single options: every enumerated field of a config (nested ones too) holds
    one of its declared values, every float is finite, and every field a config class lists in its `RANGES`
    lies in its range. Raises one line naming the option."""
    ranges: dict[str, Range] = getattr(type(config), "RANGES", {})
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        value, key = getattr(config, field.name), f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            check_options(value, f"{key}.")
            continue
        if choices(hints[field.name]) is not None:
            check_choice(key, value, hints[field.name])
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise EcgtlError(f"{key} must be a finite number, got {value}")
        allowed = ranges.get(field.name)
        if allowed is not None and not allowed.contains(value):
            raise EcgtlError(f"{key} must be {allowed.describe()}, got {format_number(value)}")


def validate_parts(config: Any) -> Any:
    """`check_options(config)`, then the `validate()` of every nested config (data, train, ...). Returns it."""
    check_options(config)
    for field in dataclasses.fields(config):
        part = getattr(config, field.name)
        if dataclasses.is_dataclass(part) and hasattr(part, "validate"):
            part.validate()
    return config
