"""Encoders from elsewhere as starting points: `--pretrained torch:PATH`, a checkpoint file of a known layout, and
`hf:...`, a Hugging Face model (`huggingface.py`); `IMPORTERS` names the reader of each scheme.

A checkpoint is read with `torch.load(weights_only=True)` (no code runs) and recognised by its keys, one layout
at a time from `CHECKPOINT_LAYOUTS`:

- `ecgtl`: the state dict of an ecgtl architecture (`torch.save(model.state_dict())`, or a bundle's
  `weights.pt`); the architecture is the one whose keys and shapes it matches.
- `fastai-xresnet1d`: Strodthoff et al.'s PTB-XL benchmark (helme/ecg_ptbxl_benchmarking, `Learner.save`: the state
  dict alone or under "model"), its `nn.Sequential` XResNet1d (stem ConvLayers 0-2, a max pool at 3, stages 4-7,
  the head at 8 with 128 hidden units) mapped by `FASTAI_XRESNET1D_KEYS` onto ecgtl's XResNet1d of the same depth.
  Its `ResBlock` registers its convolutions twice (`convs` and `convpath.0`): the duplicate must equal the original.
  Its concat pooling is (max, average), ecgtl's (average, max): the first head layers' inputs are swapped halves.

Every key of the file must be mapped and every weight of the ecgtl model filled: anything left over is one line
naming it. The head is replaced by a new one for the target's classes, as for every pretrained model.

Each layout declares the input contract its weights were trained for (`ImportedContract`); the run's data must
match it (rate, leads and their order), checked before any record is read. The file's SHA-256 is the source's
lineage, tagged on the run and shown by the model card.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ecgtl.errors import EcgtlError
from ecgtl.models import MODEL_BUILDERS, create_model
from ecgtl.models.base import EcgModel

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class ImportedContract:
    """What the imported weights were trained to read. `fs` 0: not declared (the run's rate stands)."""

    fs: float
    leads: tuple[str, ...]
    window_s: float
    unit: str

    def problem(self, fs: float, leads: tuple[str, ...], domain: str, window_s: float) -> str:
        """Why a run reading `leads` at `fs` Hz in `domain`, windows of `window_s`, cannot use these weights ('' if
        it can)."""
        if self.fs and domain != "time":
            return f"reads time signals; data asks for domain {domain}: pass --data.domain time"
        if self.fs and fs != self.fs:
            return f"reads records at {self.fs:g} Hz; data asks for {fs:g} Hz: pass --data.fs {self.fs:g}"
        if self.window_s and window_s != self.window_s:
            return (f"reads windows of {self.window_s:g} s; training asks for {window_s:g} s: "
                    f"pass --train.crop_s {self.window_s:g}")
        if self.leads and tuple(leads) != self.leads:
            return (f"reads the leads {','.join(self.leads)} in that order; data asks for {','.join(leads)}: "
                    "pass --data.leads all12")
        return ""


@dataclass
class ImportedEncoder:
    """A model built from a file, with what the lineage records about it."""

    model: EcgModel
    architecture: str
    layout: str
    contract: ImportedContract
    source: str
    digest: str
    licence: str = ""


def _stage(index: str) -> str:
    return f"stage{int(index) - 3}"


# fastai key (regex) -> ecgtl key. Groups: the Sequential index, block, conv and layer positions, the tensor name.
FASTAI_XRESNET1D_KEYS: tuple[tuple[str, Callable[[re.Match], str]], ...] = (
    (r"([0-2])\.([01])\.(\w+)", lambda m: f"body.stem.{m[1]}.{m[2]}.{m[3]}"),
    (r"([4-7])\.(\d+)\.convs\.(\d+)\.([01])\.(\w+)", lambda m: f"body.{_stage(m[1])}.{m[2]}.convs.{m[3]}.{m[4]}.{m[5]}"),
    # the shortcut's 1x1 convolution: idpath [conv] (stride 1) or [pool, conv] (stride 2); ecgtl's shortcut the same
    (r"([4-7])\.(\d+)\.idpath\.(\d+)\.([01])\.(\w+)", lambda m: f"body.{_stage(m[1])}.{m[2]}.shortcut.{m[3]}.{m[4]}.{m[5]}"),
    (r"8\.2\.(\w+)", lambda m: f"head.1.{m[1]}"),  # BatchNorm1d(2 * features)
    (r"8\.4\.(\w+)", lambda m: f"head.3.{m[1]}"),  # Linear(2 * features, 128)
    (r"8\.6\.(\w+)", lambda m: f"head.5.{m[1]}"),  # BatchNorm1d(128)
    (r"8\.8\.(\w+)", lambda m: f"head.7.{m[1]}"),  # Linear(128, classes)
)
DUPLICATE = re.compile(r"([4-7]\.\d+)\.convpath\.0\.(.+)")  # ResBlock.convpath[0] is ResBlock.convs
POOL_SWAPPED = ("head.1.weight", "head.1.bias", "head.1.running_mean", "head.1.running_var", "head.3.weight")
FASTAI_DEPTHS = {(3, 4, 6, 3): "xresnet1d50", (3, 4, 23, 3): "xresnet1d101"}
# What each layout's weights read: Strodthoff et al. trained at 100 Hz on 2.5 s crops of the 12 standard leads
# (mV, standardised per lead by a scaler on their training folds: not in the file; ecgtl fits its own on the
# target). An ecgtl state dict carries no contract: the run's data options stand.
CONTRACTS = {"fastai-xresnet1d": ImportedContract(100.0, STANDARD_LEADS, 2.5, "mV, standardised per lead"),
             "ecgtl": ImportedContract(0.0, (), 0.0, "")}


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    """(max, avg) pooled features -> (avg, max): the halves of the last dimension swapped."""
    half = tensor.shape[-1] // 2
    return torch.cat([tensor[..., half:], tensor[..., :half]], dim=-1)


def _fastai_to_ecgtl(state: dict, path: Path) -> tuple[str, dict]:
    duplicates = {key for key in state if DUPLICATE.fullmatch(key)}
    for key in duplicates:
        original = DUPLICATE.sub(r"\1.convs.\2", key)
        if original not in state or not torch.equal(state[original], state[key]):
            raise EcgtlError(f"{path}: {key} should repeat {original} (fastai's ResBlock) but does not")
    blocks = tuple(len({key.split(".")[1] for key in state if key.startswith(f"{stage}.")}) for stage in "4567")
    if blocks not in FASTAI_DEPTHS:
        raise EcgtlError(f"{path}: a fastai XResNet1d with {blocks} blocks per stage; known: "
                         + ", ".join(f"{name} {depth}" for depth, name in FASTAI_DEPTHS.items()))
    mapped = {}
    for key, tensor in state.items():
        if key in duplicates:
            continue
        for pattern, target in FASTAI_XRESNET1D_KEYS:
            match = re.fullmatch(pattern, key)
            if match:
                mapped[target(match)] = tensor
                break
        else:
            raise EcgtlError(f"{path}: key {key} has no counterpart in ecgtl's XResNet1d (unmapped)")
    for key in POOL_SWAPPED:
        if key in mapped:
            mapped[key] = _swap_halves(mapped[key])
    return FASTAI_DEPTHS[blocks], mapped


def _matching_architecture(state: dict, path: Path) -> str:
    """The ecgtl architecture whose keys and shapes a state dict has."""
    _check_output_layer(state, path)
    classes, leads = state["head.7.weight"].shape[0], _first_weight(state).shape[1]
    for name in MODEL_BUILDERS:
        expected = create_model(name, classes, n_leads=leads).state_dict()
        if expected.keys() == state.keys() and all(expected[k].shape == state[k].shape for k in state):
            return name
    raise EcgtlError(f"{path}: an ecgtl-style state dict that matches no architecture's keys and shapes "
                     f"({len(state)} tensors; ecgtl models list names them)")


def _check_output_layer(state: dict, path: Path) -> None:
    if "head.7.weight" not in state:
        raise EcgtlError(f"{path}: no output layer (head.7.weight, or 8.8.weight in the fastai layout) in the file")


def _first_weight(state: dict) -> torch.Tensor:
    return next(tensor for key, tensor in state.items() if key.startswith("body.") and tensor.dim() == 3)


def read_state_dict(path: Path) -> tuple[dict, str]:
    """The tensors of a checkpoint file (a state dict, or one under "model": fastai's `Learner.save`) and the
    file's SHA-256, from one read."""
    data = path.read_bytes()
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated files: refused, never executed
        raise EcgtlError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise EcgtlError(f"{path}: not a state dict (a mapping of names to tensors, or one under 'model')")
    return dict(loaded), hashlib.sha256(data).hexdigest()


def _layout(state: dict) -> str:
    if any(key.startswith("body.") for key in state):
        return "ecgtl"
    if "0.0.weight" in state and any(key.startswith("8.") for key in state):
        return "fastai-xresnet1d"
    return ""


def _read(uri: str) -> tuple[Path, dict, str, str]:
    """The file a `torch:` URI names, its tensors, their layout and the file's digest; each problem one line."""
    path = Path(str(uri).partition(":")[2]).expanduser()
    if not path.is_file():
        raise EcgtlError(f"{uri}: no such checkpoint file")
    state, digest = read_state_dict(path)
    layout = _layout(state)
    if not layout:
        raise EcgtlError(f"{path}: an unknown checkpoint layout (first keys: {', '.join(list(state)[:3])}); "
                         "known: ecgtl state dicts, fastai XResNet1d (Strodthoff et al.'s PTB-XL benchmark)")
    return path, state, layout, digest


def torch_contract(uri: str) -> ImportedContract:
    return CONTRACTS[_read(uri)[2]]


def load_imported(uri: str) -> ImportedEncoder:
    """The model a checkpoint file holds, its own head included, as an ecgtl model (every weight mapped)."""
    path, state, layout, digest = _read(uri)
    if layout == "fastai-xresnet1d":
        architecture, state = _fastai_to_ecgtl(state, path)
    else:
        architecture = _matching_architecture(state, path)
    _check_output_layer(state, path)
    model = create_model(architecture, state["head.7.weight"].shape[0], n_leads=_first_weight(state).shape[1])
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise EcgtlError(f"{path}: {len(missing)} weight(s) of {architecture} missing from the file, first {missing[0]}")
    for key, tensor in state.items():
        if expected[key].shape != tensor.shape:
            raise EcgtlError(f"{path}: {key} has shape {tuple(tensor.shape)}; {architecture} needs "
                             f"{tuple(expected[key].shape)}")
    model.load_state_dict(state)
    return ImportedEncoder(model, architecture, layout, CONTRACTS[layout], f"torch:{path.resolve()}", digest)


# scheme -> (module, the function giving the contract, the function loading the encoder); lazily imported, as
# `transformers` is an optional extra
IMPORTERS: dict[str, tuple[str, str, str]] = {"torch": ("ecgtl.models.imported", "torch_contract", "load_imported"),
                                              "hf": ("ecgtl.models.huggingface", "hf_contract", "load_hf")}


def _importer(uri: str, which: int) -> Callable:
    import importlib

    module, *functions = IMPORTERS[str(uri).partition(":")[0]]
    return getattr(importlib.import_module(module), functions[which])


def imported_contract(uri: str) -> ImportedContract:
    """What the weights an imported URI names were trained to read: checked against the run's data before any
    record is read."""
    return _importer(uri, 0)(uri)


def encoder_for(uri: str, n_classes: int, n_leads: int) -> ImportedEncoder:
    """An imported encoder with a new head for `n_classes`, refused in one line if it reads other leads."""
    encoder = _importer(uri, 1)(uri)
    reads = len(encoder.contract.leads) or _first_weight(encoder.model.state_dict()).shape[1]
    if reads != n_leads:
        raise EcgtlError(f"{uri}: the encoder reads {reads} leads; the data give {n_leads}")
    encoder.model.replace_head(n_classes)
    return encoder
