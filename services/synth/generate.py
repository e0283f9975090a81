"""Generate a synthetic city's worth of chest X-ray studies as DICOM files plus ground truth.

Why: the pipeline, its quality monitor (AUC against "radiologist" truth) and the benchmark all
need realistic studies whose answers are known. Everything, including UIDs and the fake patient
identifiers (which double as PHI canaries: they must never appear on the bus), is derived from
the seed, so a seed names one reproducible data set.

Layout: ``out_dir/<hospital_id>/<study_uid>/<series_uid>/1.dcm`` and ``out_dir/ground_truth.jsonl``
(one JSON object per study, fields of :class:`StudyTruth`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydicom.uid import generate_uid

from services.synth.cxr_phantom import render_chest_xray
from services.synth.dicom_writer import write_cxr_dicom
from services.synth.faults import DeviceFault, apply_fault

#: Default end of the acquisition hour; fixed so that a seed fully determines the data set.
DEFAULT_REFERENCE_TIME = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)

GROUND_TRUTH_FILE = "ground_truth.jsonl"


@dataclass(frozen=True)
class StudyTruth:
    """What the generator planted in one study: the answer key for quality monitoring."""

    study_uid: str
    hospital_id: str
    device_id: str
    lesion: bool
    path: str
    lesion_truth: dict[str, Any] | None
    series_uid: str = ""
    sop_uid: str = ""
    acquired_at: str = ""
    modality: str = "DX"
    body_part: str = "CHEST"
    study_description: str = "CHEST PA"
    patient_id: str = ""
    patient_sex: str = "O"
    patient_age_years: int | None = None


def _uid(seed: int, index: int, kind: str) -> str:
    """Deterministic UID under pydicom's root; the entropy names seed, study and UID kind."""
    return str(generate_uid(entropy_srcs=["radstream-synth", str(seed), str(index), kind]))


def generate_studies(
    out_dir: Path,
    n: int,
    *,
    seed: int,
    lesion_rate: float = 0.3,
    hospitals: int = 5,
    devices_per_hospital: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    reference_time: datetime = DEFAULT_REFERENCE_TIME,
    device_faults: Mapping[str, DeviceFault | str] | None = None,
) -> list[StudyTruth]:
    """Write ``n`` single-image DX chest studies under ``out_dir`` and return their truth.

    ``acquired_at`` values are spread over the hour before ``reference_time`` (pass
    ``datetime.now(UTC)`` for live demos; the fixed default keeps a seed reproducible).
    ``device_faults`` (device_id → fault, see :mod:`services.synth.faults`) degrades the images
    of those devices only; everything else, ground truth included, stays as without it.
    """
    if n < 0 or hospitals < 1 or devices_per_hospital < 1 or not 0.0 <= lesion_rate <= 1.0:
        raise ValueError("n >= 0, hospitals >= 1, devices_per_hospital >= 1, 0 <= lesion_rate <= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    truths: list[StudyTruth] = []
    for index in range(n):
        # One independent stream per study: study i is the same whatever n is.
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        lesion = bool(rng.random() < lesion_rate)
        hospital_no = int(rng.integers(1, hospitals + 1))
        device_no = int(rng.integers(1, devices_per_hospital + 1))
        hospital_id = f"H{hospital_no:03d}"
        device_id = f"{hospital_id}-D{device_no:02d}"
        acquired_at = reference_time - timedelta(seconds=float(rng.uniform(0.0, 3600.0)))
        birth_year = int(rng.integers(1935, 2006))
        birth_date = f"{birth_year:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        sex = "M" if rng.random() < 0.5 else "F"
        age = acquired_at.year - birth_year - 1  # conservative: birthday may not have passed

        pixels, lesion_truth = render_chest_xray(rng, lesion=lesion)
        window: tuple[float, float] | None = None
        if device_faults and device_id in device_faults:
            faulty = apply_fault(device_faults[device_id], pixels)
            pixels, window = faulty.pixels, faulty.window

        study_uid = _uid(seed, index, "study")
        series_uid = _uid(seed, index, "series")
        sop_uid = _uid(seed, index, "sop")
        patient_id = f"SYNTH-{seed}-{index:06d}"
        path = out_dir / hospital_id / study_uid / series_uid / "1.dcm"
        write_cxr_dicom(
            path,
            pixels,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            patient_name=f"SYNTH^PATIENT{index:04d}",
            patient_id=patient_id,
            birth_date=birth_date,
            accession=f"ACC{seed % 10000:04d}{index:07d}",
            institution=f"Synthetic City Hospital {hospital_id}",
            station=device_id,
            acquired_at=acquired_at,
            sex=sex,
            age_years=age,
            window=window,
        )
        truths.append(
            StudyTruth(
                study_uid=study_uid,
                hospital_id=hospital_id,
                device_id=device_id,
                lesion=lesion,
                path=str(path.resolve()),
                lesion_truth=asdict(lesion_truth) if lesion_truth is not None else None,
                series_uid=series_uid,
                sop_uid=sop_uid,
                acquired_at=acquired_at.isoformat(),
                patient_id=patient_id,
                patient_sex=sex,
                patient_age_years=age,
            )
        )
        if on_progress is not None:
            on_progress(index + 1, n)

    with (out_dir / GROUND_TRUTH_FILE).open("wb") as fh:
        for truth in truths:
            fh.write(orjson.dumps(asdict(truth), option=orjson.OPT_APPEND_NEWLINE))
    return truths


def load_ground_truth(out_dir: Path) -> list[StudyTruth]:
    """Read back ``ground_truth.jsonl`` written by :func:`generate_studies`."""
    lines = (out_dir / GROUND_TRUTH_FILE).read_bytes().splitlines()
    return [StudyTruth(**orjson.loads(line)) for line in lines if line.strip()]
