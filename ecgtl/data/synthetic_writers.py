"""Synthetic layout writers: records as real PTB-XL (WFDB format 16 + `ptbxl_database.csv`) or CinC (`.hea` +
MAT v4) files that the real readers read unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ecgtl.data.records import write_format16
from ecgtl.data.synthetic_labels import scp_codes, snomed_codes
from ecgtl.data.synthetic_physiology import (
    FS_GENERATE,
    GAIN,
    STREAM_CODES,
    RecordPlan,
    stream_rng,
    synthesise_signal,
)
from ecgtl.inputs import STANDARD_LEADS

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


@dataclass(frozen=True)
class WriteTask:
    plans: tuple[RecordPlan, ...]
    layout: str
    seed: int
    out: str
    rates: tuple[int, ...]
    noise: bool


def write_records(task: WriteTask) -> list[dict]:
    out = Path(task.out)
    truths = []
    for plan in task.plans:
        signal, truth = synthesise_signal(plan, task.layout, task.seed, task.noise)
        code_rng = stream_rng(task.layout, task.seed, plan.index, STREAM_CODES)
        if task.layout == "g12ec":
            folder = out / f"g{plan.index // 1000 + 1}"
            folder.mkdir(exist_ok=True)
            digital = np.clip(np.round(signal * GAIN), -32767, 32767).astype(np.int16)
            _write_mat_v4(folder / f"{plan.record_id}.mat", digital)
            codes = snomed_codes(plan, code_rng)
            (folder / f"{plan.record_id}.hea").write_text(_cinc_header(plan.record_id, digital, plan.age, plan.sex, codes))
        else:
            truth["scp_codes"] = scp_codes(plan, code_rng)
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


def write_ptbxl_tables(root: Path, plans: list[RecordPlan], meta: pd.DataFrame, truth: pd.DataFrame) -> None:
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
