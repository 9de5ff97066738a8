"""The config layer: choices declared once (Literal or a registry) and checked by one function, whole numbers
read as whole numbers, and a reuse key over every field's effective value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from ecgtl.config import OneOf, build, check_options, choices, reuse_key
from ecgtl.errors import EcgtlError
from ecgtl.stages.configs import FinetuneConfig, PretrainConfig
from ecgtl.training.config import TrainConfig


def test_a_changed_default_changes_the_reuse_key():
    """A run made with the old default must not stand in for one with the new default: the key hashes every
    field's effective value, not only the fields that differ from the defaults."""
    fields = [(f.name, f.type, field(default_factory=f.default_factory) if f.default_factory is not
               dataclasses.MISSING else field(default=f.default)) for f in dataclasses.fields(FinetuneConfig)]
    old = dataclasses.make_dataclass("FinetuneConfig", fields, frozen=True)
    new_train = TrainConfig(epochs=10, lr=2e-2, schedule="gradual", epochs_per_stage=1, decay=2.6)  # lr 1e-2 before
    changed = [(name, kind, field(default_factory=lambda: new_train) if name == "train" else spec)
               for name, kind, spec in fields]
    new = dataclasses.make_dataclass("FinetuneConfig", changed, frozen=True)
    assert reuse_key(old()) == reuse_key(FinetuneConfig())  # the same class and values: the same key
    assert reuse_key(new()) != reuse_key(old())  # defaults both, but another lr: another key
    assert reuse_key(new()) == reuse_key(old(train=new_train))  # what counts is the effective value


def test_fields_that_cannot_change_a_result_stay_out_of_the_key():
    base = FinetuneConfig()
    quiet = dataclasses.replace(base, train=dataclasses.replace(base.train, prefetch=0, device_cache="on",
                                                                explain_examples=0, system_metrics=True))
    assert reuse_key(quiet) == reuse_key(base)
    assert reuse_key(dataclasses.replace(base, train=dataclasses.replace(base.train, precision="bf16"))) != reuse_key(base)


_REGISTRY = {"a": 1}


@dataclass(frozen=True)
class _Options:
    mode: Literal["x", "y"] = "x"
    plugin: Annotated[str, OneOf(_REGISTRY)] = "a"


def test_choices_are_read_from_a_literal_or_a_live_registry(monkeypatch):
    assert choices(Literal["x", "y"]) == ("x", "y")
    check_options(_Options())
    with pytest.raises(EcgtlError, match="^mode must be one of x, y; got 'z'$"):
        check_options(_Options(mode="z"))
    with pytest.raises(EcgtlError, match="^plugin must be one of a; got 'b'$"):
        check_options(_Options(plugin="b"))
    monkeypatch.setitem(_REGISTRY, "b", 2)  # registered later (a plugin): valid from then on
    check_options(_Options(plugin="b"))


def test_nested_options_are_named_by_their_dotted_path():
    with pytest.raises(EcgtlError, match=r"^train\.precision must be one of auto, fp32, bf16, fp16; got 'fp8'$"):
        FinetuneConfig(train=TrainConfig(precision="fp8")).validate()
    with pytest.raises(EcgtlError, match=r"^data\.domain must be one of time, fft_abs, fft_real, fft_imag"):
        build(PretrainConfig, {"data.domain": "wavelet"}).validate()


@pytest.mark.parametrize("text", ["2.5", "1e400", "nan"])
def test_a_whole_number_option_refuses_what_is_not_one(text):
    with pytest.raises(EcgtlError, match="^parameter train.epochs: cannot read"):
        build(FinetuneConfig, {"train.epochs": text})
    assert build(FinetuneConfig, {"train.epochs": "3"}).train.epochs == 3
    assert build(FinetuneConfig, {"train.epochs": "3.0"}).train.epochs == 3
