"""The input vocabulary, free of heavy imports (the CLI builds its options from it): lead names and groups,
input domains, window aggregations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ecgtl.config import SEED_RANGE, Range, choices
from ecgtl.errors import EcgtlError

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
Domain = Literal["time", "fft_abs", "fft_real", "fft_imag"]
Aggregation = Literal["max", "mean"]
# Amplitude convention: `dataset` keeps the units (mV) and lets the fitted lead scaler standardise; `record`
# first standardises each lead of each record (ecgtl.data.signal.standardise_records).
Scaling = Literal["dataset", "record"]
DOMAINS: tuple[str, ...] = choices(Domain)
AGGREGATIONS: tuple[str, ...] = choices(Aggregation)
SCALINGS: tuple[str, ...] = choices(Scaling)
# Sampling rates ecgtl reads and models run at (Hz): headers outside it are record problems, options errors.
FS_RANGE: tuple[float, float] = (50.0, 16_000.0)
# Beyond this an ECG sample (in mV) is physically absurd (a wrong gain or unit): ECGs stay within about ±10 mV,
# pacing spikes and baseline drift within a few tens. Records beyond it are record problems, requests a 400.
MAX_ABS_MV = 1000.0
# The largest request the served model scores (values = records x 12 x samples, ~24 MB as float32): e.g.
# 16 minutes of one record at 500 Hz. Larger requests are a 400, not a multi-gigabyte allocation.
MAX_REQUEST_VALUES = 6_000_000
# The ranges of what a cache is built from (`PrepareConfig`, and `DataConfig` which names one).
PREPARE_RANGES: dict[str, Range] = {"fs": Range(*FS_RANGE), "length_s": Range(0, 3600, low_open=True),
                                    "split_seed": SEED_RANGE}
LEAD_GROUPS: dict[str, tuple[str, ...]] = {
    "all12": STANDARD_LEADS,
    "limb6": STANDARD_LEADS[:6],
    "precordial6": STANDARD_LEADS[6:],
}
# Lead names as headers spell them in any case (`avr`, `AVR`) -> the standard spelling (`aVR`).
LEAD_BY_UPPER = {lead.upper(): lead for lead in STANDARD_LEADS}


def parse_leads(text: str | Sequence[str]) -> tuple[str, ...]:
    """`all12`, `limb6`, `precordial6`, or lead names (`I,II`, `V1`; any case) -> leads in standard order."""
    if isinstance(text, str):
        if text in LEAD_GROUPS:
            return LEAD_GROUPS[text]
        names = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    else:
        names = list(text)
    if not names:
        raise EcgtlError(f"leads {text!r}: name a group ({', '.join(LEAD_GROUPS)}) or leads such as I,II,V1")
    unknown = [name for name in names if name.upper() not in LEAD_BY_UPPER]
    if unknown:
        raise EcgtlError(f"leads {text!r}: unknown lead(s) {', '.join(unknown)}; use {', '.join(STANDARD_LEADS)}")
    chosen = {LEAD_BY_UPPER[name.upper()] for name in names}
    if len(chosen) != len(names):
        raise EcgtlError(f"leads {text!r}: a lead is named twice")
    return tuple(lead for lead in STANDARD_LEADS if lead in chosen)


def leads_label(leads: Sequence[str]) -> str:
    """The short name of a lead selection (`all12`, `limb6`, or `I,II`), for run names and tables."""
    leads = tuple(leads)
    return next((name for name, group in LEAD_GROUPS.items() if group == leads), ",".join(leads))


@dataclass(frozen=True)
class InputContract:
    """What a model expects of its inputs; two models (or a model and a dataset) must agree on all of it."""

    fs: float
    leads: tuple[str, ...]
    domain: Domain
    scaling: Scaling = "dataset"

    def describe(self) -> str:
        return f"{leads_label(self.leads)} leads, {self.domain}, {self.fs:g} Hz, {self.scaling} scaling"


_CONTRACT_NAMES = {"fs": "sampling rate", "leads": "leads", "domain": "input domain", "scaling": "scaling"}


def input_mismatch(a: InputContract, b: InputContract) -> list[str]:
    """The parts of two input contracts that differ, by name ("sampling rate", "leads", ...)."""
    return [name for attribute, name in _CONTRACT_NAMES.items() if getattr(a, attribute) != getattr(b, attribute)]
