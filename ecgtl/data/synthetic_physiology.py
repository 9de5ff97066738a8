"""Synthetic ECG physiology: a 3-D cardiac dipole per beat (Gaussian wave components), projected to the 12
leads with Dower's transform, each shared class applied as its clinically stated change with a drawn severity,
plus each layout's acquisition noise (`DomainProfile`). See `ecgtl/data/synthetic.py` for the whole generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

FS_GENERATE = 500


DURATION_S = 10.0


GAIN = 1000.0


# Mixed into every random stream so that the layouts are independent domains for the same seed.
_LAYOUT_STREAM = {"ptbxl": 1, "g12ec": 2}


STREAM_PLAN, STREAM_SIGNAL, STREAM_CODES = 0, 1, 2


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
    rng = stream_rng(layout, seed, plan.index, STREAM_SIGNAL)
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
