"""Synthetic PhysioNet-layout datasets: real WFDB / MAT files that the real readers read unchanged.

Physiology. Each beat is a 3-D cardiac dipole (a vectorcardiogram, X left, Y inferior, Z posterior as in
Frank's leads) built from Gaussian wave components (P; septal, main and terminal QRS forces; ST; T). It is
projected to the eight independent leads I, II, V1-V6 with Dower's transform (Dower et al. 1980; the matrix
whose pseudo-inverse is Edenbrandt & Pahlm's inverse Dower), and III, aVR, aVL, aVF are derived from I and
II, so the limb-lead identities hold exactly (to within int16 quantisation once written). Frontal axes are
set in the hexaxial system that a reader measures (net QRS in I vs aVF), by solving for the dipole's X/Y.

Each of the 18 shared classes is the clinically stated change with a severity drawn per record and ranges
that overlap the normal ones (see `_apply_classes` in `synthetic_physiology.py`). Labels co-occur (LVH with LAE and
with lateral strain/ischaemia) and other rhythms (AF, sinus brady/tachycardia, PVCs) appear too.
The two layouts differ the way PTB-XL and Georgia do: label prevalence (the published counts), sampling
(PTB-XL 100 and 500 Hz files, Georgia 500 Hz), mains frequency (50 vs 60 Hz), noise level and device gain.

Same seed -> byte-identical files: every record draws from its own `default_rng(stream_seed(layout, seed,
index, stream))`, so output does not depend on the number of worker processes, and the two layouts never share
a random stream (a Georgia record is not a noisy copy of the PTB-XL record with the same index and seed). A ground-truth sidecar (`synthetic_truth.csv`) gives
intervals, axis and severities per record, for tests that measure the manifestations from the signal.

One idea per file: the physiology (`synthetic_physiology.py`), the label plans (`synthetic_labels.py`), the layout
writers (`synthetic_writers.py`); this module configures, plans and orchestrates the generation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtl.config import SEED_RANGE, check_choice
from ecgtl.data.labels import SHARED18
from ecgtl.data.spec import DatasetSpec
from ecgtl.data.synthetic_labels import OTHER_LABELS, sample_labels
from ecgtl.data.synthetic_physiology import PROFILES, STREAM_PLAN, RecordPlan, stream_rng
from ecgtl.data.synthetic_writers import WriteTask, write_ptbxl_tables, write_records
from ecgtl.errors import DatasetError
from ecgtl.paths import cache_root
from ecgtl.progress import map_chunks

GENERATOR_VERSION = "2"  # 2: random streams keyed by layout too (independent domains)


LAYOUTS = ("ptbxl", "g12ec")


MARKER = "synthetic.json"


TRUTH = "synthetic_truth.csv"


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
        check_choice("synthetic layout", self.like, LAYOUTS, DatasetError)
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
    rng = stream_rng(config.like, config.seed, -1, STREAM_PLAN)
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
        tasks = [WriteTask(tuple(plans[i:i + chunk]), config.like, config.seed, str(tmp), config.rates, config.noise)
                 for i in range(0, len(plans), chunk)]
        workers = workers or os.cpu_count() or 1
        chunks = map_chunks(write_records, tasks, [len(task.plans) for task in tasks], workers=workers,
                            label=f"synthesising {config.like} n={config.n}", show=progress)
        truths = [truth for chunk_truths in chunks for truth in chunk_truths]
        truth = pd.DataFrame(truths)
        if config.like == "ptbxl":
            write_ptbxl_tables(tmp, plans, meta, truth)
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
