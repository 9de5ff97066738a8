"""The tuning search space: parsed and checked once (every problem one error before any trial starts), and
the suggestions of one trial, each schedule's own parameters only under that schedule.

`SearchSpace` (in `stages/configs.py`) holds the ranges as text, from dotted options (`--space.lr 1e-4,3e-2`) or
a YAML file with the same keys (`space_file`); `ParsedSpace` is what a study stores and compares.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

from ecgtl.config import check_choice
from ecgtl.errors import EcgtlError
from ecgtl.files import load_yaml
from ecgtl.stages.configs import SearchSpace, TuneConfig
from ecgtl.training.config import FrozenBn, Schedule

_FLOAT_RANGES = {"lr": True, "decay": False, "head_lr_mult": True, "weight_decay": True, "dropout": False}
_INT_RANGES = ("head_epochs", "epochs_per_stage", "groups_per_stage")


@dataclass(frozen=True)
class ParsedSpace:
    schedules: tuple[str, ...]
    floats: dict[str, tuple[float, float, bool]]  # name -> (low, high, log)
    ints: dict[str, tuple[int, int]]
    batch_sizes: tuple[int, ...]
    frozen_bn: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _numbers(name: str, text: str, kind: type) -> tuple:
    try:
        values = tuple(kind(float(v)) if kind is int else kind(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise EcgtlError(f"space.{name}: {text!r} is not a list of numbers") from None
    if not 1 <= len(values) <= 2:
        raise EcgtlError(f"space.{name}: give `low,high` or one value, got {text!r}")
    return values if len(values) == 2 else values * 2


def _choices(name: str, text: str, declared) -> tuple[str, ...]:
    """A comma list of an option's declared values (at least one)."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise EcgtlError(f"space.{name}: name at least one value")
    for value in values:
        check_choice(f"space.{name}", value, declared)
    return values


def parse_space(space: SearchSpace) -> ParsedSpace:
    """Validate a search space; every problem is one clear error before any trial starts."""
    schedules = _choices("schedules", space.schedules, Schedule)
    floats = {}
    for name, log in _FLOAT_RANGES.items():
        low, high = _numbers(name, getattr(space, name), float)
        if low > high or (log and low <= 0) or not (math.isfinite(low) and math.isfinite(high)):
            raise EcgtlError(f"space.{name}: need finite low <= high{' and low > 0 (log scale)' if log else ''}, "
                             f"got {getattr(space, name)!r}")
        floats[name] = (low, high, log)
    if floats["decay"][0] < 1 or floats["dropout"][1] >= 1 or floats["dropout"][0] < 0:
        raise EcgtlError("space: decay must be >= 1 and dropout within [0, 1)")
    ints = {}
    for name in _INT_RANGES:
        low, high = _numbers(name, getattr(space, name), int)
        if low < 1 or low > high:
            raise EcgtlError(f"space.{name}: need 1 <= low <= high, got {getattr(space, name)!r}")
        ints[name] = (low, high)
    try:
        batch_sizes = tuple(int(v) for v in space.batch_size.split(",") if v.strip())
    except ValueError:
        raise EcgtlError(f"space.batch_size: {space.batch_size!r} is not a list of integers") from None
    if not batch_sizes or min(batch_sizes) < 2:
        raise EcgtlError(f"space.batch_size: integers of at least 2, got {space.batch_size!r}")
    return ParsedSpace(schedules, floats, ints, batch_sizes, _choices("frozen_bn", space.frozen_bn, FrozenBn))


def load_space_file(path: str, base: SearchSpace) -> SearchSpace:
    data = load_yaml(path, "search space file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise EcgtlError(f"{path}: a search space file is a mapping (schedules: ..., lr: [low, high]), "
                         f"not a {type(data).__name__}")
    unknown = set(map(str, data)) - {f.name for f in SearchSpace.__dataclass_fields__.values()}
    if unknown:
        raise EcgtlError(f"{path}: unknown search space keys {', '.join(sorted(unknown))}")
    if any(isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v))
           for v in data.values()):
        raise EcgtlError(f"{path}: search space values are a number, a word or a flat list")
    as_text = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in data.items()}
    return replace(base, **as_text)


def suggest(trial, space: ParsedSpace) -> dict:
    """TrainConfig fields for one trial; a schedule's own parameters are suggested only under it."""
    def number(name: str):
        low, high, log = space.floats[name]
        return low if low == high else trial.suggest_float(name, low, high, log=log)

    def integer(name: str):
        low, high = space.ints[name]
        return low if low == high else trial.suggest_int(name, low, high)

    def choice(name: str, options: tuple):
        return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))

    schedule = choice("schedule", space.schedules)
    params = {"schedule": schedule, "lr": number("lr"), "decay": number("decay"),
              "head_lr_mult": number("head_lr_mult"), "weight_decay": number("weight_decay"),
              "dropout": number("dropout"), "batch_size": choice("batch_size", space.batch_sizes),
              "frozen_bn": choice("frozen_bn", space.frozen_bn), "epochs_per_stage": 1, "groups_per_stage": 1}
    if schedule == "two_stage":
        params["epochs_per_stage"] = integer("head_epochs")
    elif schedule in ("gradual", "chain_thaw"):
        params["epochs_per_stage"] = integer("epochs_per_stage")
        if schedule == "gradual":
            params["groups_per_stage"] = integer("groups_per_stage")
    if schedule == "full":
        params["decay"] = 1.0 if space.floats["decay"][0] <= 1.0 else params["decay"]
    return params


def search_space_of(config: TuneConfig) -> ParsedSpace:
    """The space a tuning config asks for: its `space_file` over its dotted `space` options, parsed."""
    return parse_space(load_space_file(config.space_file, config.space) if config.space_file else config.space)


def train_fields(params: dict) -> dict:
    """TrainConfig fields from a trial's Optuna params (the schedule's own names mapped back)."""
    fields = {k: v for k, v in params.items() if k in ("lr", "decay", "head_lr_mult", "weight_decay", "dropout",
                                                      "batch_size", "frozen_bn", "epochs_per_stage",
                                                      "groups_per_stage")}
    if "schedule" in params:
        fields["schedule"] = params["schedule"]
    if "head_epochs" in params:
        fields["epochs_per_stage"] = params["head_epochs"]
    return fields
