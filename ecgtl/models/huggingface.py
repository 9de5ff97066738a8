"""Hugging Face encoders as starting points: `--pretrained hf:ORG/NAME[@REVISION]` or `hf:FOLDER` (a local
snapshot: `config.json` and the weights, as `save_pretrained` or a download writes them).

Resolution goes through `huggingface_hub.snapshot_download` with its own cache (`HF_HUB_CACHE`, `HF_HOME`) and
offline mode (`HF_HUB_OFFLINE=1`: the cache only); with no network and no cached copy it is one line. The model is
read by `transformers` (an optional extra: `pip install ecgtl[hf]`), never with `trust_remote_code`: the family
must be one `transformers` itself implements.

Families (`FAMILIES`): `hubert`, the HuBERT-ECG family's architecture (Coppola et al. 2024): the 12 leads of a
5 s window at 100 Hz flattened lead after lead into one 6 000-sample sequence, as its model card describes; the
transformer's last hidden states are the feature sequence the ecgtl concat-pooling head reads. Layer groups for
gradual unfreezing: `features` (the convolutional feature encoder, its projection, the positional convolution and
the encoder's first layer norm), then each transformer layer in order, then the head. A fine-tuned model's bundle
keeps the `transformers` config (`architecture_config`), so serving and evaluation rebuild it without the hub.
ONNX export is not offered for these models (attention export is `transformers`' business, not tested here).

Lineage: the snapshot's commit (its folder name in the cache) or the local folder's digest, and the licence its
model card (`README.md` front matter `license:`) names; HuBERT-ECG's is CC BY-NC 4.0, which the model card repeats.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from ecgtl.errors import EcgtlError
from ecgtl.models.base import EcgModel
from ecgtl.models.imported import STANDARD_LEADS, ImportedContract, ImportedEncoder

FAMILIES = {"hubert": ImportedContract(100.0, STANDARD_LEADS, 5.0, "mV, as HuBERT-ECG's preprocessing leaves them")}
ARCHITECTURE = {"hubert": "hf-hubert"}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise EcgtlError("hf: encoders need transformers: pip install 'ecgtl[hf]'") from None
    return transformers


class HubertEcg(EcgModel):
    """A `transformers` HubertModel reading 12 flattened leads, with the ecgtl head over its hidden states."""

    def __init__(self, hubert: nn.Module, n_classes: int) -> None:
        super().__init__([("hubert", hubert)], hubert.config.hidden_size, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)  # lead after lead, as HuBERT-ECG reads a record
        return self.body["hubert"](flat).last_hidden_state.transpose(1, 2)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        hubert = self.body["hubert"]
        front = nn.ModuleList([hubert.feature_extractor, hubert.feature_projection, hubert.encoder.pos_conv_embed,
                               hubert.encoder.layer_norm])
        layers = [(f"layer{i + 1}", layer) for i, layer in enumerate(hubert.encoder.layers)]
        return [("features", front), *layers, ("head", self.head)]

    def architecture_config(self) -> dict:
        return self.body["hubert"].config.to_dict()

    def for_export(self, input_length: int) -> EcgModel:
        raise EcgtlError(f"{self.architecture}: ONNX export is not offered for Hugging Face encoders (their attention "
                         "export is transformers' own and untested here); serve the MLflow model instead")


def from_config(config: dict, n_classes: int) -> HubertEcg:
    """The model a bundle describes (its `architecture_config`), weights to be loaded by the caller."""
    transformers = _transformers()
    hubert = transformers.HubertModel(transformers.HubertConfig.from_dict(config))
    return HubertEcg(hubert, n_classes)


def snapshot_folder(uri: str) -> Path:
    """The folder an `hf:` URI names: a local snapshot, or the hub's (cached) snapshot of ORG/NAME[@REVISION]."""
    reference = str(uri).partition(":")[2].strip()
    local = Path(reference).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise EcgtlError(f"{local}: not a Hugging Face model folder (no config.json)")
        return local
    if not re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", reference):
        raise EcgtlError(f"{uri}: neither a local folder nor a hub name (hf:ORG/NAME[@REVISION])")
    _transformers()
    from huggingface_hub import snapshot_download

    repo, _, revision = reference.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo, revision=revision or None, local_files_only=offline,
                                      cache_dir=os.environ.get("HF_HUB_CACHE") or None))
    except Exception as exc:  # offline miss, no network, unknown repository: one line either way
        where = os.environ.get("HF_HUB_CACHE") or "the Hugging Face cache"
        raise EcgtlError(f"{uri}: not in {where}" + (" and HF_HUB_OFFLINE is set" if offline else
                         f" and the hub could not be reached ({type(exc).__name__})")
                         + ": download it once with a network, or pass a local snapshot folder (hf:PATH)") from None


def _family(folder: Path) -> str:
    import json

    family = json.loads((folder / "config.json").read_text()).get("model_type", "")
    if family not in FAMILIES:
        raise EcgtlError(f"{folder / 'config.json'}: model_type {family!r}; known families: {', '.join(FAMILIES)}")
    return family


def hf_contract(uri: str) -> ImportedContract:
    return FAMILIES[_family(snapshot_folder(uri))]


def licence(folder: Path) -> str:
    """The `license:` of the model card's YAML front matter, '' if it names none."""
    card = folder / "README.md"
    if not card.is_file():
        return ""
    match = re.search(r"^---\s*\n(.*?)\n---", card.read_text(errors="replace"), re.S)
    found = re.search(r"^license:\s*(\S+)", match[1], re.M) if match else None
    return found[1].strip("'\"") if found else ""


def _digest(folder: Path) -> str:
    """The snapshot's commit when it is one (the cache names the folder by it), else a digest of its files."""
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return folder.name
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_hf(uri: str) -> ImportedEncoder:
    """The encoder an `hf:` URI names, with an ecgtl head of one class (replaced for the target by the caller)."""
    folder = snapshot_folder(uri)
    family = _family(folder)
    transformers = _transformers()
    try:
        hubert = transformers.HubertModel.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise EcgtlError(f"{folder}: transformers could not read the model ({str(exc).splitlines()[0][:200]})") from None
    model = HubertEcg(hubert, 1)
    model.architecture = ARCHITECTURE[family]
    return ImportedEncoder(model, ARCHITECTURE[family], f"huggingface-{family}", FAMILIES[family], uri,
                           _digest(folder), licence(folder))
