"""Models: XResNet1d (18/34/50/101), ResNet1d (Wang et al.), Inception1d, S4D (diagonal state spaces, small and
base); all expose `layer_groups()`.

Plugins: a package that declares an entry point in the group `ecgtl.models` (name = the architecture's name,
value = a builder `(n_leads, n_classes) -> EcgModel`) adds an architecture usable everywhere a built-in one is.
The contract is `EcgModel`'s: `features(x [batch, leads, samples]) -> [batch, channels, time]`, named
`layer_groups()` with the head last, the replaceable concat-pooling `head`; the input rate and window are the
run's `data` options, as for every architecture. Entry points are read when a model is built or listed (not at
import), so a package installed after ecgtl was imported is seen."""

from __future__ import annotations

from collections.abc import Callable

from ecgtl.config import check_choice
from ecgtl.errors import EcgtlError
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


PLUGIN_GROUP = "ecgtl.models"


def plugin_entry_points() -> dict:
    """{name: entry point} of the installed plugin architectures; a name that shadows a built-in is refused."""
    from importlib.metadata import entry_points

    found = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name in MODEL_BUILDERS:
            raise EcgtlError(f"plugin {entry.value} (entry point group {PLUGIN_GROUP}): the name {entry.name!r} is a "
                             "built-in architecture; give the plugin's model another name")
        found[entry.name] = entry
    return found


def architectures() -> list[str]:
    """Every architecture's name: the built-in ones, then the installed plugins'."""
    return [*MODEL_BUILDERS, *plugin_entry_points()]


def _builder(name: str) -> Callable[[int, int], EcgModel]:
    if name in MODEL_BUILDERS:
        return MODEL_BUILDERS[name]
    plugins = plugin_entry_points()
    check_choice("model", name, [*MODEL_BUILDERS, *plugins])
    try:
        return plugins[name].load()
    except Exception as exc:  # a broken plugin is the plugin's problem: one line naming it
        raise EcgtlError(f"plugin model {name!r} ({plugins[name].value}) failed to load: {exc}"[:400]) from None


# Architectures rebuilt from a configuration kept in the bundle (imported encoders): name -> module:function
CONFIGURED_BUILDERS = {"hf-hubert": "ecgtl.models.huggingface:from_config"}


def create_model(name: str, n_classes: int, n_leads: int = 12, config: dict | None = None) -> EcgModel:
    """A fresh model of a registered or plugin architecture; with `config`, an imported one rebuilt from it."""
    if config is not None and name in CONFIGURED_BUILDERS:
        import importlib

        module, _, function = CONFIGURED_BUILDERS[name].partition(":")
        model = getattr(importlib.import_module(module), function)(config, n_classes)
        model.architecture = name
        return model
    model = _builder(name)(n_leads, n_classes)
    if not isinstance(model, EcgModel):
        raise EcgtlError(f"model {name!r}: its builder returned a {type(model).__name__}, not an "
                         "ecgtl.models.base.EcgModel (features, layer_groups with the head last, head)")
    model.architecture = name
    return model


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
