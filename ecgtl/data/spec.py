"""Dataset specs: how a dataset is named everywhere (CLI, MLflow params, cache keys).

`ptbxl:PATH`, `cinc:PATH`, `synthetic:ptbxl?n=3000&seed=0`, `synthetic:g12ec?n=1500&seed=0`; a bare path is
accepted too and its layout detected. A leaf module: the readers, the synthetic generator and the cache import
it, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from ecgtl.errors import DatasetError
from ecgtl.files import find_files

SPEC_KINDS = ("ptbxl", "cinc", "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec. `target` is a path for ptbxl/cinc and a layout name for synthetic."""

    kind: str
    target: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def options(self) -> dict[str, str]:
        return dict(self.params)

    def __str__(self) -> str:
        """The canonical spelling: options sorted (`parse_spec` sorts them), commas kept (`rates=100,500`)."""
        query = f"?{urlencode(self.params, safe='/,')}" if self.params else ""
        return f"{self.kind}:{self.target}{query}"

    @property
    def short_name(self) -> str:
        """A few characters for run names: `g12ec`, `ptbxl`, or the folder name."""
        return self.target if self.kind == "synthetic" else Path(self.target).name

    @property
    def label(self) -> str:
        """The short name plus what tells synthetic variants apart (`ptbxl-s1-noiseless`): matrix rows, columns."""
        if self.kind != "synthetic":
            return self.short_name
        seed = f"-s{self.options['seed']}" if "seed" in self.options else ""
        noise = "-noiseless" if self.options.get("noise", "1") in ("0", "false", "no") else ""
        return f"{self.short_name}{seed}{noise}"


def parse_spec(text: str) -> DatasetSpec:
    """Parse a dataset spec; a bare existing path is detected as ptbxl or cinc."""
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    if not sep or kind not in SPEC_KINDS:
        if not text:
            raise DatasetError("empty dataset spec: write ptbxl:PATH, cinc:PATH or synthetic:ptbxl?n=3000&seed=0")
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(
                f"{text}: no such folder, and not a dataset spec (ptbxl:PATH, cinc:PATH, synthetic:ptbxl?n=3000)"
            )
        return DatasetSpec(detect_layout(path), str(path.resolve()))
    target, _, query = rest.partition("?")
    if not target:
        raise DatasetError(f"dataset spec {text!r} names no path or layout")
    params = tuple(sorted(parse_qsl(query, keep_blank_values=True)))
    if kind == "synthetic":
        return DatasetSpec(kind, target, params)
    return DatasetSpec(kind, str(Path(target).expanduser().resolve()), params)


def detect_layout(root: Path) -> str:
    """'ptbxl' when a `ptbxl_database*.csv` is at the top, 'cinc' when `.hea` files lie below."""
    if not root.exists():
        raise DatasetError(f"{root}: dataset path does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset path is not a folder")
    if any(root.glob("ptbxl_database*.csv")):
        return "ptbxl"
    if find_files(root, ".hea", first_only=True):
        return "cinc"
    raise DatasetError(f"{root}: neither PTB-XL layout (ptbxl_database.csv) nor CinC layout (*.hea files)")
