"""Models: XResNet1d (18/34/50/101), ResNet1d (Wang et al.), Inception1d, S4D (diagonal state spaces, small and
base); all expose `layer_groups()`."""

from __future__ import annotations

from collections.abc import Callable

from ecgtl.config import check_choice
from ecgtl.models.base import EcgModel
from ecgtl.models.inception1d import inception1d
from ecgtl.models.resnet1d import resnet1d_wang
from ecgtl.models.s4d import SIZES as S4D_SIZES
from ecgtl.models.s4d import s4d
from ecgtl.models.xresnet1d import LAYERS, xresnet1d

MODEL_BUILDERS: dict[str, Callable[[int, int], EcgModel]] = {
    **{name: (lambda n_leads, n_classes, name=name: xresnet1d(name, n_leads, n_classes)) for name in LAYERS},
    "resnet1d_wang": resnet1d_wang,
    "inception1d": inception1d,
    **{name: (lambda n_leads, n_classes, name=name: s4d(name, n_leads, n_classes)) for name in S4D_SIZES},
}


def create_model(name: str, n_classes: int, n_leads: int = 12) -> EcgModel:
    check_choice("model", name, MODEL_BUILDERS)
    model = MODEL_BUILDERS[name](n_leads, n_classes)
    model.architecture = name
    return model


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
