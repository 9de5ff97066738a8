"""Synthetic PhysioNet-layout datasets: real WFDB / MAT files that the real readers read unchanged.

Physiology. Each beat is a 3-D cardiac dipole (a vectorcardiogram, X left, Y inferior, Z posterior as in
Frank's leads) built from Gaussian wave components (P; septal, main and terminal QRS forces; ST; T). It is
projected to the eight independent leads I, II, V1-V6 with Dower's transform (Dower et al. 1980; the matrix
whose pseudo-inverse is Edenbrandt & Pahlm's inverse Dower), and III, aVR, aVL, aVF are derived from I and
II, so the limb-lead identities hold exactly (to within int16 quantisation once written). Frontal axes are
set in the hexaxial system that a reader measures (net QRS in I vs aVF), by solving for the dipole's X/Y.

Each of the 18 shared classes is the clinically stated change with a severity drawn per record and ranges
that overlap the normal ones (see `CLASS_RULES` and `_apply_classes`). Labels co-occur (LVH with LAE and
with lateral strain/ischaemia) and other rhythms (AF, sinus brady/tachycardia, PVCs) appear too.
The two layouts differ the way PTB-XL and Georgia do: label prevalence (the published counts), sampling
(PTB-XL 100 and 500 Hz files, Georgia 500 Hz), mains frequency (50 vs 60 Hz), noise level and device gain.

Same seed -> byte-identical files: every record draws from its own `default_rng(stream_seed(layout, seed,
index, stream))`, so output does not depend on the number of worker processes, and the two layouts never share
a random stream (a Georgia record is not a noisy copy of the PTB-XL record with the same index and seed). A ground-truth sidecar (`synthetic_truth.csv`) gives
intervals, axis and severities per record, for tests that measure the manifestations from the signal.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ecgtl.config import SEED_RANGE
from ecgtl.data.labels import SHARED18, SHARED18_MAP
from ecgtl.data.records import STANDARD_LEADS, write_format16
from ecgtl.data.spec import DatasetSpec
from ecgtl.errors import DatasetError
from ecgtl.paths import cache_root

GENERATOR_VERSION = "2"  # 2: random streams keyed by layout too (independent domains)
LAYOUTS = ("ptbxl", "g12ec")
MARKER = "synthetic.json"
TRUTH = "synthetic_truth.csv"
FS_GENERATE = 500
DURATION_S = 10.0
GAIN = 1000.0

# Mixed into every random stream so that the layouts are independent domains for the same seed.
_LAYOUT_STREAM = {"ptbxl": 1, "g12ec": 2}
_STREAM_PLAN, _STREAM_SIGNAL, _STREAM_CODES = 0, 1, 2


def stream_rng(layout: str, seed: int, index: int, stream: int) -> np.random.Generator:
    """The random stream of one record (or of the plan, index -1) of one layout and seed."""
    return np.random.default_rng([_LAYOUT_STREAM[layout], seed, index + 1, stream])


# Dower transform rows (I, II, V1..V6) from the dipole (X, Y, Z).
DOWER = np.array([
    [0.632, -0.235, 0.059],
    [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917],
    [0.044, 0.164, -1.387],
    [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601],
    [1.125, 0.127, -0.086],
    [0.831, 0.076, 0.230],
])
_ROW_AVF = DOWER[1] - DOWER[0] / 2
# Leads I and aVF as functions of the dipole's X, Y (inverted once) and of its Z.
_FRONTAL_INVERSE = np.linalg.inv(np.array([DOWER[0, :2], _ROW_AVF[:2]]))
_FRONTAL_Z = np.array([DOWER[0, 2], _ROW_AVF[2]])

# Published counts (PTB-XL of 21 837, Georgia of 10 344); CRBBB in Georgia also counts 542 coded RBBB.
PUBLISHED_COUNTS: dict[str, tuple[int, int]] = {
    "1AVB": (797, 769), "CRBBB": (542, 28 + 542), "IRBBB": (1118, 407), "LAFB": (1626, 180),
    "CLBBB": (536, 231), "IVCD": (789, 203), "LNGQT": (118, 1391), "2AVB": (14, 23), "ISCAN": (44, 281),
    "ILBBB": (77, 86), "ISCIN": (219, 451), "ISCLA": (142, 903), "LAO/LAE": (427, 870), "LPFB": (177, 25),
    "LVH": (2359, 1232), "NDT": (381, 1883), "RVH": (126, 86), "SEHYP": (30, 71),
}
FULL_SIZE = {"ptbxl": 21837, "g12ec": 10344}
GEORGIA_RBBB_SHARE = 542 / 570  # Georgia codes complete RBBB mostly as the generic RBBB 59118001

# Rhythm / other labels outside the 18: (SCP code, SNOMED code, PTB-XL count, Georgia count).
OTHER_LABELS: dict[str, tuple[str, str, int, int]] = {
    "AF": ("AFIB", "164889003", 1514, 570),
    "SB": ("SBRAD", "426177001", 637, 1677),
    "STach": ("STACH", "427084000", 826, 1261),
    "PVC": ("PVC", "17338001", 1146, 357),
}
SINUS_RHYTHM = ("SR", "426783006")
NORMAL_SCP = "NORM"

# Label co-occurrence as in real data: (given, then, probability that `then` is added).
CO_OCCURRENCE: tuple[tuple[str, str, float], ...] = (
    ("LVH", "LAO/LAE", 0.2), ("LVH", "ISCLA", 0.15), ("1AVB", "LAFB", 0.1),
)
# Pairs that cannot coexist; the first is kept.
EXCLUSIVE: tuple[tuple[str, str], ...] = (
    ("CLBBB", "ILBBB"), ("CLBBB", "CRBBB"), ("CLBBB", "IRBBB"), ("CLBBB", "IVCD"), ("CRBBB", "IRBBB"),
    ("ILBBB", "CRBBB"), ("ILBBB", "IRBBB"), ("ILBBB", "IVCD"), ("CRBBB", "IVCD"), ("IRBBB", "IVCD"),
    ("LAFB", "LPFB"), ("CLBBB", "LAFB"), ("CLBBB", "LPFB"), ("RVH", "LAFB"), ("LPFB", "RVH"),
)

# PTB-XL statement table rows the synthetic layout writes: code -> (description, diagnostic, form,
# rhythm, diagnostic_class, diagnostic_subclass), following PTB-XL's scp_statements.csv.
SCP_STATEMENT_ROWS: dict[str, tuple[str, float | None, float | None, float | None, str | None, str | None]] = {
    "NORM": ("normal ECG", 1.0, None, None, "NORM", "NORM"),
    "1AVB": ("first degree AV block", 1.0, None, None, "CD", "_AVB"),
    "2AVB": ("second degree AV block", 1.0, None, None, "CD", "_AVB"),
    "CRBBB": ("complete right bundle branch block", 1.0, None, None, "CD", "CRBBB"),
    "IRBBB": ("incomplete right bundle branch block", 1.0, None, None, "CD", "IRBBB"),
    "CLBBB": ("complete left bundle branch block", 1.0, None, None, "CD", "CLBBB"),
    "ILBBB": ("incomplete left bundle branch block", 1.0, None, None, "CD", "ILBBB"),
    "IVCD": ("non-specific intraventricular conduction disturbance (block)", 1.0, None, None, "CD", "IVCD"),
    "LAFB": ("left anterior fascicular block", 1.0, None, None, "CD", "LAFB/LPFB"),
    "LPFB": ("left posterior fascicular block", 1.0, None, None, "CD", "LAFB/LPFB"),
    "LNGQT": ("long QT-interval", 1.0, None, None, "STTC", "STTC"),
    "ISCAN": ("ischemic in anterior leads", 1.0, None, None, "STTC", "ISCA"),
    "ISCIN": ("ischemic in inferior leads", 1.0, None, None, "STTC", "ISCI"),
    "ISCLA": ("ischemic in lateral leads", 1.0, None, None, "STTC", "ISCA"),
    "NDT": ("non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
    "LAO/LAE": ("left atrial overload/enlargement", 1.0, None, None, "HYP", "LAO/LAE"),
    "LVH": ("left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH"),
    "RVH": ("right ventricular hypertrophy", 1.0, None, None, "HYP", "RVH"),
    "SEHYP": ("septal hypertrophy", 1.0, None, None, "HYP", "SEHYP"),
    "SR": ("sinus rhythm", None, None, 1.0, None, None),
    "AFIB": ("atrial fibrillation", None, None, 1.0, None, None),
    "SBRAD": ("sinus bradycardia", None, None, 1.0, None, None),
    "STACH": ("sinus tachycardia", None, None, 1.0, None, None),
    "PVC": ("ventricular premature complex", None, 1.0, None, None, None),
}


@dataclass(frozen=True)
class DomainProfile:
    """What differs between the PTB-XL-like and Georgia-like acquisition."""

    mains_hz: float
    wander_mv: tuple[float, float]
    emg_mv: tuple[float, float]
    hum_mv: tuple[float, float]
    electrode_gain_sd: float
    device_gain: tuple[float, float]
    age_mean: float


PROFILES = {
    "ptbxl": DomainProfile(50.0, (0.03, 0.25), (0.003, 0.02), (0.0, 0.015), 0.04, (0.97, 1.03), 60.0),
    "g12ec": DomainProfile(60.0, (0.08, 0.45), (0.008, 0.045), (0.005, 0.04), 0.08, (0.82, 0.98), 61.0),
}


# ----------------------------------------------------------------------------------------------- beats
def frontal_direction(axis_deg: float, z: float) -> np.ndarray:
    """Unit-magnitude-in-frontal-plane dipole whose net projection on (I, aVF) points at `axis_deg`."""
    theta = np.deg2rad(axis_deg)
    target = np.array([np.cos(theta), np.sin(theta)]) - z * _FRONTAL_Z
    xy = _FRONTAL_INVERSE @ target
    return np.array([xy[0], xy[1], z])


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


@dataclass
class Phenotype:
    """Per-record parameters of rhythm, intervals and dipole wave components (times in seconds, mV)."""

    hr: float
    pr: float
    p_dur: float
    qrs: float
    qrs_normal: float
    qtc: float
    axis: float
    r_amp: float
    r_z: float
    p_amp: float
    septal_amp: float
    septal_dir: np.ndarray
    t_vec: np.ndarray
    st_vec: np.ndarray = field(default_factory=lambda: np.zeros(3))
    terminal_amp: float = 0.0
    lbbb_notch: float = 0.0  # 0: one main R; >0: split R separated by this fraction of QRS
    lae_amp: float = 0.0
    blocked_every: int = 0
    af: bool = False
    pvc_every: int = 0
    severities: dict[str, float] = field(default_factory=dict)


def _normal_phenotype(rng: np.random.Generator, age: float, sex: str, other: set[str]) -> Phenotype:
    hr = float(np.clip(rng.normal(72, 11), 58, 100))
    if "SB" in other:
        hr = float(rng.uniform(45, 58))
    if "STach" in other:
        hr = float(rng.uniform(101, 120))
    axis = float(np.clip(rng.normal(45, 28), -40, 100))
    amplitude = (1.25 - 0.006 * (age - 20)) * (1.1 if sex == "male" else 0.92) * rng.lognormal(0, 0.15)
    r_amp = 1.3 * amplitude
    qtc_mean = 405 if sex == "male" else 418
    t_axis = axis + rng.normal(0, 15)
    return Phenotype(
        hr=hr,
        pr=float(np.clip(rng.normal(0.158, 0.018), 0.115, 0.205)),
        p_dur=float(np.clip(rng.normal(0.095, 0.008), 0.078, 0.112)),
        qrs=float(np.clip(rng.normal(0.090, 0.007), 0.074, 0.106)),
        qrs_normal=0.0,
        qtc=float(np.clip(rng.normal(qtc_mean, 16), 360, 462)) / 1000,
        axis=axis,
        r_amp=r_amp,
        r_z=float(rng.uniform(0.25, 0.5)),
        p_amp=float(rng.uniform(0.10, 0.2)),
        septal_amp=0.12 * r_amp * float(rng.uniform(0.7, 1.3)),
        septal_dir=_unit([-0.5, 0.25, -0.8]),
        t_vec=0.35 * amplitude * rng.lognormal(0, 0.22) * _unit(frontal_direction(t_axis, -0.45)),
    )


def _severity(rng: np.random.Generator, phenotype: Phenotype, name: str) -> float:
    value = float(rng.uniform())
    phenotype.severities[name] = value
    return value


def _between(low: float, high: float, severity: float) -> float:
    return low + (high - low) * severity


def _apply_classes(phenotype: Phenotype, labels: set[str], rng: np.random.Generator) -> None:
    """Turn labels into the clinically stated changes (ranges overlap the normal ones at their edges)."""
    p = phenotype
    p.qrs_normal = p.qrs
    if "1AVB" in labels:
        p.pr = _between(0.196, 0.34, _severity(rng, p, "1AVB"))
    if "2AVB" in labels:
        p.blocked_every = int(round(_between(6, 3, _severity(rng, p, "2AVB"))))
    if "LAO/LAE" in labels:
        s = _severity(rng, p, "LAO/LAE")
        p.p_dur = _between(0.108, 0.16, s)
        p.lae_amp = _between(0.06, 0.2, s)
    if "LAFB" in labels:
        p.axis = _between(-38, -88, _severity(rng, p, "LAFB"))
        p.septal_dir = _unit(frontal_direction(125, -0.3))
        p.septal_amp *= 1.4
        p.qrs += rng.uniform(0, 0.012)
    if "LPFB" in labels:
        p.axis = _between(96, 150, _severity(rng, p, "LPFB"))
        p.septal_dir = _unit(frontal_direction(-50, -0.3))
        p.septal_amp *= 1.4
    if "RVH" in labels:
        s = _severity(rng, p, "RVH")
        p.axis = _between(95, 160, s)
        p.r_z = -_between(0.15, 0.9, s)
        p.r_amp *= 1.1
    if "LVH" in labels:
        s = _severity(rng, p, "LVH")
        p.r_amp *= _between(1.35, 2.3, s)
        p.r_z = _between(0.5, 0.9, s)
        if rng.uniform() < 0.5:  # strain pattern: discordant ST-T in lateral leads
            p.severities["LVH_strain"] = 1.0
            p.t_vec = p.t_vec - 1.4 * np.linalg.norm(p.t_vec) * _unit(frontal_direction(p.axis, p.r_z))
            p.st_vec = p.st_vec - 0.08 * _unit(frontal_direction(p.axis, p.r_z))
    if "SEHYP" in labels:
        p.septal_amp = p.r_amp * _between(0.3, 0.6, _severity(rng, p, "SEHYP"))
    if "IVCD" in labels:
        p.qrs = _between(0.11, 0.15, _severity(rng, p, "IVCD"))
    if "CRBBB" in labels or "IRBBB" in labels:
        complete = "CRBBB" in labels
        s = _severity(rng, p, "CRBBB" if complete else "IRBBB")
        p.qrs = _between(0.118, 0.165, s) if complete else _between(0.098, 0.121, s)
        p.terminal_amp = p.r_amp * (_between(0.45, 0.9, s) if complete else _between(0.25, 0.5, s))
        if complete:  # secondary T inversion in V1-V3
            p.t_vec = p.t_vec + np.array([0.0, 0.0, 0.9]) * np.linalg.norm(p.t_vec)
    if "CLBBB" in labels or "ILBBB" in labels:
        complete = "CLBBB" in labels
        s = _severity(rng, p, "CLBBB" if complete else "ILBBB")
        p.qrs = _between(0.12, 0.175, s) if complete else _between(0.108, 0.122, s)
        p.septal_amp = 0.0  # no septal q
        p.lbbb_notch = _between(0.14, 0.2, s) if complete else _between(0.07, 0.11, s)
        p.r_z = _between(0.7, 1.1, s)
        p.axis = float(np.clip(p.axis, -30, 30))
        if complete:  # discordant ST-T
            main = _unit(frontal_direction(p.axis, p.r_z))
            p.t_vec = -0.45 * p.r_amp * main
            p.st_vec = p.st_vec - 0.12 * main
    if "LNGQT" in labels:
        p.qtc = _between(0.465, 0.56, _severity(rng, p, "LNGQT"))
    ischaemia = {"ISCAN": np.array([0.0, 0.0, 1.0]), "ISCIN": np.array([0.0, -1.0, 0.0]),
                 "ISCLA": _unit([-1.0, -0.25, 0.0])}
    for name, direction in ischaemia.items():
        if name in labels:
            s = _severity(rng, p, name)
            scale = max(np.linalg.norm(p.t_vec), 0.2)
            p.t_vec = p.t_vec + _between(0.7, 1.8, s) * scale * direction
            p.st_vec = p.st_vec + _between(0.03, 0.15, s) * direction
    if "NDT" in labels:
        p.t_vec = p.t_vec * _between(0.5, 0.08, _severity(rng, p, "NDT"))


def beat_components(p: Phenotype, qrs_onset: float, rr: float) -> list[tuple[float, float, np.ndarray]]:
    """(centre time, width sigma, dipole vector) of one conducted beat's QRS, ST and T components."""
    q = p.qrs
    main = p.r_amp * _unit(frontal_direction(p.axis, p.r_z))
    components = []
    if p.septal_amp > 0:
        components.append((qrs_onset + 0.16 * p.qrs_normal, 0.06 * p.qrs_normal, p.septal_amp * p.septal_dir))
    left_end = q if p.terminal_amp == 0 else p.qrs_normal  # RBBB: the left ventricle finishes on time
    if p.lbbb_notch > 0:
        for centre in (0.45 - p.lbbb_notch, 0.45 + p.lbbb_notch):
            components.append((qrs_onset + centre * q, 0.12 * q, 0.85 * main))
    else:
        components.append((qrs_onset + 0.45 * left_end, 0.14 * left_end, main))
        components.append((qrs_onset + 0.82 * left_end, 0.075 * left_end,
                           0.3 * p.r_amp * _unit([-0.45, -0.35, 0.5])))
    if p.terminal_amp > 0:  # late rightward-anterior forces: R' in V1, broad S in I and V6
        start = 0.7 * p.qrs_normal
        components.append((qrs_onset + (start + q) / 2, (q - start) / 5, p.terminal_amp * _unit([-0.65, 0.1, -0.75])))
    qt = p.qtc * np.sqrt(rr)
    t_sigma = float(np.clip(0.12 * qt, 0.035, 0.06))
    if np.any(p.st_vec):
        components.append((qrs_onset + q + 0.06, 0.035, p.st_vec))
    components.append((qrs_onset + qt - 2.5 * t_sigma, t_sigma, p.t_vec))
    return components


def p_components(p: Phenotype, onset: float) -> list[tuple[float, float, np.ndarray]]:
    """The P wave: one component, or right + delayed left-posterior atrial components (LAE: bifid P)."""
    direction = _unit(frontal_direction(55, -0.15))
    if p.lae_amp == 0:
        return [(onset + p.p_dur / 2, p.p_dur / 5, p.p_amp * direction)]
    sigma = p.p_dur / 8
    return [
        (onset + 0.3 * p.p_dur, sigma, 0.8 * p.p_amp * _unit(frontal_direction(75, -0.3))),
        (onset + 0.72 * p.p_dur, sigma, p.p_amp * 0.7 * _unit(frontal_direction(20, 0.2)) + p.lae_amp * np.array([0.3, 0.0, 1.0])),
    ]


def _pvc_components(p: Phenotype, onset: float, rng: np.random.Generator) -> list[tuple[float, float, np.ndarray]]:
    direction = _unit(frontal_direction(rng.uniform(-150, 150), rng.uniform(-0.8, 0.8)))
    return [(onset + 0.075, 0.03, 1.6 * p.r_amp * direction), (onset + 0.36, 0.06, -0.5 * p.r_amp * direction)]


def dipole_components(p: Phenotype, rng: np.random.Generator) -> list[tuple[float, float, np.ndarray]]:
    """All wave components over the record (beats start before 0 so the first second is not empty)."""
    rr_mean = 60.0 / p.hr
    phase = rng.uniform(0, 2 * np.pi)
    components: list[tuple[float, float, np.ndarray]] = []
    t = -rng.uniform(0.3, 1.0) * rr_mean
    beat = 0
    while t < DURATION_S + 0.5:
        rr = rr_mean * (1 + 0.035 * np.sin(2 * np.pi * 0.25 * t + phase) + 0.015 * rng.standard_normal())
        if p.af:
            rr = rr_mean * rng.uniform(0.6, 1.4)
        if p.pvc_every and beat % p.pvc_every == p.pvc_every - 1:
            components += _pvc_components(p, t + p.pr, rng)
        elif p.af:
            components += beat_components(p, t + p.pr, rr)
        else:
            components += p_components(p, t)
            if not (p.blocked_every and beat % p.blocked_every == p.blocked_every - 1):
                components += beat_components(p, t + p.pr, rr)
        t += rr
        beat += 1
    return components


def render_dipole(components: list[tuple[float, float, np.ndarray]], fs: float, n: int) -> np.ndarray:
    """Sum the Gaussian components into a dipole time series [3, n]."""
    centres = np.array([c[0] for c in components])
    sigmas = np.array([c[1] for c in components])
    vectors = np.array([c[2] for c in components])
    half = int(np.ceil(4 * sigmas.max() * fs))
    offsets = np.arange(-half, half + 1)
    index = np.round(centres * fs).astype(int)[:, None] + offsets[None, :]
    times = index / fs
    weights = np.exp(-0.5 * ((times - centres[:, None]) / sigmas[:, None]) ** 2)
    keep = (index >= 0) & (index < n)
    flat_index, flat_weights = index[keep], weights[keep]
    component_of = np.broadcast_to(np.arange(len(components))[:, None], index.shape)[keep]
    return np.stack([np.bincount(flat_index, flat_weights * vectors[component_of, axis], minlength=n)
                     for axis in range(3)])


def limb_and_precordial(independent: np.ndarray) -> np.ndarray:
    """[8, n] (I, II, V1..V6) -> [12, n] in STANDARD_LEADS order, deriving III, aVR, aVL, aVF exactly."""
    lead_i, lead_ii = independent[0], independent[1]
    limb = np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2,
                     lead_ii - lead_i / 2])
    return np.concatenate([limb, independent[2:]])


def _sinusoid(frequency: float, t: np.ndarray, amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """amplitude * sin(2 pi f t + phase) per lead, from two shared sines (8x fewer sin evaluations)."""
    angle = 2 * np.pi * frequency * t
    return (amplitude * np.cos(phase))[:, None] * np.sin(angle) + (amplitude * np.sin(phase))[:, None] * np.cos(angle)


def _noise(rng: np.random.Generator, profile: DomainProfile, n: int, fs: float) -> np.ndarray:
    """Baseline wander, EMG and mains hum per electrode-level (independent) lead [8, n]."""
    t = np.arange(n) / fs
    wander = np.zeros((8, n))
    for _ in range(3):
        amplitude = np.full(8, rng.uniform(*profile.wander_mv) / 3)
        wander += _sinusoid(rng.uniform(0.05, 0.5), t, amplitude, rng.uniform(0, 2 * np.pi, 8))
    emg = rng.standard_normal((8, n)) * rng.uniform(*profile.emg_mv)
    emg = (emg + np.roll(emg, 1, axis=1)) / np.sqrt(2)  # mild band-limiting
    hum = _sinusoid(profile.mains_hz, t, np.full(8, rng.uniform(*profile.hum_mv)), rng.uniform(0, 2 * np.pi, 8))
    return wander + emg + hum


@dataclass(frozen=True)
class RecordPlan:
    """What the parent decides for a record (labels, demographics); the signal is drawn in the worker."""

    index: int
    record_id: str
    labels: tuple[str, ...]
    other: tuple[str, ...]
    age: float
    sex: str


def synthesise_signal(plan: RecordPlan, layout: str, seed: int, noise: bool = True) -> tuple[np.ndarray, dict]:
    """The 12-lead signal [12, 5000] at 500 Hz in mV, and its ground truth."""
    rng = stream_rng(layout, seed, plan.index, _STREAM_SIGNAL)
    profile = PROFILES[layout]
    other = set(plan.other)
    phenotype = _normal_phenotype(rng, plan.age, plan.sex, other)
    _apply_classes(phenotype, set(plan.labels), rng)
    phenotype.af = "AF" in other
    phenotype.pvc_every = int(rng.integers(4, 8)) if "PVC" in other else 0
    components = dipole_components(phenotype, rng)
    n = int(DURATION_S * FS_GENERATE)
    independent = DOWER @ render_dipole(components, FS_GENERATE, n)
    if phenotype.af:  # fibrillatory waves instead of P, largest in V1
        t = np.arange(n) / FS_GENERATE
        f_waves = rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
        independent += f_waves[None] * np.array([0.3, 0.5, 1.0, 0.6, 0.4, 0.3, 0.2, 0.2])[:, None]
    if noise:
        independent *= rng.normal(1.0, profile.electrode_gain_sd, (8, 1)) * rng.uniform(*profile.device_gain)
        independent += _noise(rng, profile, n, FS_GENERATE)
    truth = {
        "record_id": plan.record_id,
        "hr_bpm": round(phenotype.hr, 2),
        "pr_ms": round(phenotype.pr * 1000, 1),
        "p_ms": round(phenotype.p_dur * 1000, 1),
        "qrs_ms": round(phenotype.qrs * 1000, 1),
        "qtc_ms": round(phenotype.qtc * 1000, 1),
        "axis_deg": round(phenotype.axis, 1),
        "blocked_every": phenotype.blocked_every,
        "labels": " ".join(plan.labels),
        "other": " ".join(plan.other),
        "severities": json.dumps({k: round(v, 3) for k, v in phenotype.severities.items()}, sort_keys=True),
    }
    return limb_and_precordial(independent), truth


# ----------------------------------------------------------------------------------------------- labels
def _prevalence(counts: tuple[int, int], layout: str) -> float:
    column = 0 if layout == "ptbxl" else 1
    return counts[column] / FULL_SIZE[layout]


def sample_labels(n: int, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot [n, 18] shared labels and [n, len(OTHER_LABELS)] other labels, with co-occurrence."""
    target = np.array([_prevalence(PUBLISHED_COUNTS[c], layout) for c in SHARED18])
    independent = target.copy()
    index = {c: j for j, c in enumerate(SHARED18)}
    # Co-occurrence may explain at most 80% of a class's prevalence (PTB-XL has far more LVH than ISCLA).
    rules = [(index[given], index[then], min(probability, 0.8 * target[index[then]] / target[index[given]]))
             for given, then, probability in CO_OCCURRENCE]
    for given, then, probability in rules:  # keep each marginal at its target in expectation
        added = probability * target[given]
        independent[then] = (independent[then] - added) / (1 - added)
    for name in SHARED18:  # a class dropped by an exclusive partner is drawn more often to compensate
        partners = [index[keep] for keep, drop in EXCLUSIVE if drop == name]
        survive = np.prod([1 - target[j] for j in partners]) if partners else 1.0
        independent[index[name]] = min(1.0, independent[index[name]] / survive)
    labels = rng.random((n, len(SHARED18))) < independent
    for given, then, probability in rules:
        labels[:, then] |= labels[:, given] & (rng.random(n) < probability)
    for keep, drop in EXCLUSIVE:
        labels[labels[:, index[keep]], index[drop]] = False
    other_prevalence = np.array([_prevalence(v[2:], layout) for v in OTHER_LABELS.values()])
    other = rng.random((n, len(OTHER_LABELS))) < other_prevalence
    names = list(OTHER_LABELS)
    other[other[:, names.index("AF")], names.index("SB")] = False
    other[other[:, names.index("AF")], names.index("STach")] = False
    other[other[:, names.index("SB")], names.index("STach")] = False
    other[labels[:, index["2AVB"]], names.index("AF")] = False
    return labels, other


# ----------------------------------------------------------------------------------------------- writing
def _write_mat_v4(path: Path, digital: np.ndarray) -> None:
    """MAT v4 int16 matrix named `val` ([leads, samples], stored column-major) as the challenge ships it."""
    rows, cols = digital.shape
    header = np.array([30, rows, cols, 0, 4], dtype="<i4").tobytes() + b"val\0"
    with open(path, "wb") as handle:
        handle.write(header)
        handle.write(np.ascontiguousarray(digital.T, dtype="<i2").tobytes())


def _cinc_header(record_id: str, digital: np.ndarray, age: float, sex: str, codes: list[str]) -> str:
    checksums = (digital.astype(np.int64).sum(axis=1) + 32768) % 65536 - 32768
    lines = [f"{record_id} 12 {FS_GENERATE} {digital.shape[1]} 05-May-2020 14:50:55"]
    for lead, first, checksum in zip(STANDARD_LEADS, digital[:, 0], checksums, strict=True):
        lines.append(f"{record_id}.mat 16+24 1000/mV 16 0 {int(first)} {int(checksum)} 0 {lead}")
    lines += [f"#Age: {int(age)}", f"#Sex: {sex.capitalize()}", f"#Dx: {','.join(codes)}",
              "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    return "\n".join(lines) + "\n"


def _snomed_codes(plan: RecordPlan, rng: np.random.Generator) -> list[str]:
    codes = []
    for name in plan.labels:
        code = SHARED18_MAP[name][0]
        if name == "CRBBB" and rng.uniform() < GEORGIA_RBBB_SHARE:
            code = "59118001"
        codes.append(code)
    codes += [OTHER_LABELS[name][1] for name in plan.other]
    if "AF" not in plan.other:
        codes.append(SINUS_RHYTHM[1])
    return codes


def _scp_codes(plan: RecordPlan, rng: np.random.Generator) -> str:
    likelihoods = (100.0, 100.0, 80.0, 50.0, 35.0)
    codes = {SHARED18_MAP[name][1]: float(rng.choice(likelihoods)) for name in plan.labels}
    if not plan.labels:
        codes[NORMAL_SCP] = 100.0
    for name in plan.other:
        codes[OTHER_LABELS[name][0]] = 0.0
    if "AF" not in plan.other:
        codes[SINUS_RHYTHM[0]] = 0.0
    return repr(codes)


@dataclass(frozen=True)
class _WriteTask:
    plans: tuple[RecordPlan, ...]
    layout: str
    seed: int
    out: str
    rates: tuple[int, ...]
    noise: bool


def _write_records(task: _WriteTask) -> list[dict]:
    out = Path(task.out)
    truths = []
    for plan in task.plans:
        signal, truth = synthesise_signal(plan, task.layout, task.seed, task.noise)
        code_rng = stream_rng(task.layout, task.seed, plan.index, _STREAM_CODES)
        if task.layout == "g12ec":
            folder = out / f"g{plan.index // 1000 + 1}"
            folder.mkdir(exist_ok=True)
            digital = np.clip(np.round(signal * GAIN), -32767, 32767).astype(np.int16)
            _write_mat_v4(folder / f"{plan.record_id}.mat", digital)
            codes = _snomed_codes(plan, code_rng)
            (folder / f"{plan.record_id}.hea").write_text(_cinc_header(plan.record_id, digital, plan.age, plan.sex, codes))
        else:
            truth["scp_codes"] = _scp_codes(plan, code_rng)
            ptbxl_leads = tuple(lead.upper() if lead.startswith("a") else lead for lead in STANDARD_LEADS)
            for rate in task.rates:
                rate_signal = signal if rate == FS_GENERATE else resample_poly(signal, rate, FS_GENERATE, axis=1)
                folder, name = _ptbxl_paths(plan.index + 1, rate)
                write_format16(out / folder, name, rate_signal, rate, leads=ptbxl_leads)
        truths.append(truth)
    return truths


def _ptbxl_paths(ecg_id: int, rate: int) -> tuple[str, str]:
    suffix = "lr" if rate == 100 else "hr"
    return f"records{rate}/{ecg_id // 1000 * 1000:05d}", f"{ecg_id:05d}_{suffix}"


# Four times full PTB-XL: about 10 GB of records at 500 Hz. A typo such as n=10000000000 is refused at once.
MAX_SYNTHETIC_RECORDS = 100_000


@dataclass(frozen=True)
class SynthConfig:
    """A synthetic dataset's parameters; equal configs give byte-identical files."""

    like: str = "g12ec"
    n: int = 1500
    seed: int = 0
    rates: tuple[int, ...] = (100,)
    noise: bool = True

    def validate(self) -> SynthConfig:
        if self.like not in LAYOUTS:
            raise DatasetError(f"unknown synthetic layout {self.like!r}; choose from {', '.join(LAYOUTS)}")
        if not 1 <= self.n <= MAX_SYNTHETIC_RECORDS:
            raise DatasetError(f"n must lie in 1..{MAX_SYNTHETIC_RECORDS} records, got {self.n}")
        if not SEED_RANGE.contains(self.seed):
            raise DatasetError(f"seed must be {SEED_RANGE.describe()}, got {self.seed}")
        bad_rates = [r for r in self.rates if r not in (100, 500)]
        if bad_rates or not self.rates:
            raise DatasetError(f"rates must be 100 and/or 500, got {','.join(map(str, self.rates)) or 'none'}")
        return self

    def marker(self) -> dict:
        return {**asdict(self), "rates": list(self.rates), "generator_version": GENERATOR_VERSION}


def plan_records(config: SynthConfig) -> tuple[list[RecordPlan], pd.DataFrame]:
    """Labels, demographics and (PTB-XL) patients/folds for every record, from the master seed."""
    rng = stream_rng(config.like, config.seed, -1, _STREAM_PLAN)
    labels, other = sample_labels(config.n, config.like, rng)
    profile = PROFILES[config.like]
    ages = np.clip(rng.normal(profile.age_mean, 16, config.n), 18, 95).round()
    sexes = np.where(rng.random(config.n) < 0.52, "male", "female")
    prefix = "E" if config.like == "g12ec" else ""
    plans = [
        RecordPlan(i, f"{prefix}{i + 1:05d}", tuple(SHARED18[j] for j in np.flatnonzero(labels[i])),
                   tuple(name for j, name in enumerate(OTHER_LABELS) if other[i, j]), float(ages[i]), str(sexes[i]))
        for i in range(config.n)
    ]
    # PTB-XL: some patients have several records; folds are assigned per patient.
    patient = np.cumsum(rng.random(config.n) > 0.15) - 1
    n_patients = patient.max() + 1
    fold_of_patient = rng.permutation(np.arange(n_patients) % 10 + 1)
    meta = pd.DataFrame({"patient_id": patient.astype(float) + 1, "strat_fold": fold_of_patient[patient]})
    return plans, meta


def generate(config: SynthConfig, out: Path, workers: int | None = None, progress: bool = True) -> Path:
    """Write a synthetic dataset into `out` (atomically: a temp folder renamed into place)."""
    config.validate()
    out = Path(out)
    if out.exists():
        marker = out / MARKER
        if marker.exists() and json.loads(marker.read_text()) == config.marker():
            return out
        if marker.exists() or any(out.iterdir()):
            raise DatasetError(f"{out}: exists and is not a synthetic dataset with these parameters; "
                               "choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plans, meta = plan_records(config)
        chunk = 50
        tasks = [_WriteTask(tuple(plans[i:i + chunk]), config.like, config.seed, str(tmp), config.rates, config.noise)
                 for i in range(0, len(plans), chunk)]
        workers = workers or os.cpu_count() or 1
        truths: list[dict] = []
        with click.progressbar(length=len(plans), label=f"synthesising {config.like} n={config.n}",
                               file=sys.stderr, hidden=not progress) as bar:
            if workers <= 1 or len(tasks) == 1:
                for task in tasks:
                    truths += _write_records(task)
                    bar.update(len(task.plans))
            else:
                with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                    for task, result in zip(tasks, pool.map(_write_records, tasks), strict=True):
                        truths += result
                        bar.update(len(task.plans))
        truth = pd.DataFrame(truths)
        if config.like == "ptbxl":
            _write_ptbxl_tables(tmp, plans, meta, truth)
        truth.drop(columns=["scp_codes"], errors="ignore").to_csv(tmp / TRUTH, index=False)
        (tmp / MARKER).write_text(json.dumps(config.marker(), indent=1))
        if out.exists() and not any(out.iterdir()):
            out.rmdir()  # an empty folder the user made for us
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same dataset first; same config, same bytes
            if not ((out / MARKER).exists() and json.loads((out / MARKER).read_text()) == config.marker()):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_ptbxl_tables(root: Path, plans: list[RecordPlan], meta: pd.DataFrame, truth: pd.DataFrame) -> None:
    rows = []
    for plan, patient_id, fold, scp in zip(plans, meta["patient_id"], meta["strat_fold"], truth["scp_codes"], strict=True):
        ecg_id = plan.index + 1
        rows.append({
            "ecg_id": ecg_id, "patient_id": patient_id, "age": plan.age, "sex": 0 if plan.sex == "male" else 1,
            "device": "synthetic", "recording_date": "1990-01-01 00:00:00", "report": "synthetic",
            "scp_codes": scp, "strat_fold": int(fold),
            "filename_lr": "/".join(_ptbxl_paths(ecg_id, 100)), "filename_hr": "/".join(_ptbxl_paths(ecg_id, 500)),
        })
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    statements = pd.DataFrame.from_dict(
        SCP_STATEMENT_ROWS, orient="index",
        columns=["description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"],
    )
    statements.to_csv(root / "scp_statements.csv")


def config_from_spec(spec: DatasetSpec) -> SynthConfig:
    options = spec.options
    unknown = set(options) - {"n", "seed", "rates", "noise"}
    if unknown:
        raise DatasetError(f"{spec}: unknown synthetic option(s) {', '.join(sorted(unknown))}")
    try:
        return SynthConfig(
            like=spec.target,
            n=int(options.get("n", 3000 if spec.target == "ptbxl" else 1500)),
            seed=int(options.get("seed", 0)),
            rates=tuple(int(r) for r in options.get("rates", "100").split(",")),
            noise=options.get("noise", "1") not in ("0", "false", "no"),
        ).validate()
    except (ValueError, OverflowError):
        raise DatasetError(f"{spec}: options n, seed and rates must be integers") from None


def materialise(spec: DatasetSpec) -> DatasetSpec:
    """Generate a synthetic spec's files on first use (in the cache folder); return a ptbxl:/cinc: spec."""
    config = config_from_spec(spec)
    name = f"{config.like}-n{config.n}-seed{config.seed}-r{'_'.join(map(str, config.rates))}"
    name += ("" if config.noise else "-noiseless") + f"-v{GENERATOR_VERSION}"
    from ecgtl import timing

    with timing.phase("generation"):
        folder = generate(config, cache_root() / "synthetic" / name)
    return DatasetSpec("ptbxl" if config.like == "ptbxl" else "cinc", str(folder))
