"""Synthetic label plans: which records carry which of the 18 shared classes (prevalence from the published
PTB-XL and Georgia counts, co-occurrence and exclusions as in real data), and the codes each layout writes.
"""

from __future__ import annotations

import numpy as np

from ecgtl.data.labels import SHARED18, SHARED18_MAP
from ecgtl.data.synthetic_physiology import RecordPlan

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


def snomed_codes(plan: RecordPlan, rng: np.random.Generator) -> list[str]:
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


def scp_codes(plan: RecordPlan, rng: np.random.Generator) -> str:
    likelihoods = (100.0, 100.0, 80.0, 50.0, 35.0)
    codes = {SHARED18_MAP[name][1]: float(rng.choice(likelihoods)) for name in plan.labels}
    if not plan.labels:
        codes[NORMAL_SCP] = 100.0
    for name in plan.other:
        codes[OTHER_LABELS[name][0]] = 0.0
    if "AF" not in plan.other:
        codes[SINUS_RHYTHM[0]] = 0.0
    return repr(codes)
