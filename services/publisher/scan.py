"""Read DICOM headers from a folder tree and group them into studies and series.

`read_header` and `scan_tree` are the I/O (pixel data is never read); `group_instances` is pure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM

#: Ages above this are reported as this value: exact high ages identify people (HIPAA Safe Harbor).
MAX_REPORTED_AGE_YEARS = 90


@dataclass(frozen=True)
class InstanceHeader:
    """The header fields of one DICOM instance that the publisher needs (PHI stays in here)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int | None
    modality: str
    body_part: str
    patient_id: str
    patient_issuer: str
    accession: str
    study_description: str
    series_description: str
    patient_sex: str
    patient_age_years: int | None
    acquired_at: datetime | None
    institution: str
    station: str
    path: Path


@dataclass
class ScanStats:
    """What `scan_tree` saw: every regular file is either a DICOM instance or skipped."""

    files: int = 0
    dicom: int = 0
    skipped: int = 0


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(str(ds.get(keyword, "")).strip())
    except ValueError:
        return None


def _offset(ds: Dataset) -> timezone:
    """TimezoneOffsetFromUTC ("+0300") if present; DICOM times without it are taken as UTC."""
    raw = _text(ds, "TimezoneOffsetFromUTC")
    if len(raw) == 5 and raw[0] in "+-" and raw[1:].isdigit():
        minutes = int(raw[1:3]) * 60 + int(raw[3:5])
        return timezone(timedelta(minutes=-minutes if raw[0] == "-" else minutes))
    return UTC


def _date_time(ds: Dataset, date_kw: str, time_kw: str, tz: timezone) -> datetime | None:
    raw_date = _text(ds, date_kw)
    if not raw_date:
        return None
    try:
        day: date = DA(raw_date)
        raw_time = _text(ds, time_kw)
        clock: time = TM(raw_time) if raw_time else time(0)
    except (ValueError, TypeError):
        return None
    return datetime.combine(day, clock.replace(tzinfo=None), tzinfo=tz)


def acquisition_time(ds: Dataset) -> datetime | None:
    """When the images were made: AcquisitionDateTime, else acquisition, series, study date+time."""
    tz = _offset(ds)
    raw = _text(ds, "AcquisitionDateTime")
    if raw:
        try:
            dt: datetime = DT(raw)
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)
        except (ValueError, TypeError):
            pass
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"),
                             ("ContentDate", "ContentTime"),
                             ("SeriesDate", "SeriesTime"),
                             ("StudyDate", "StudyTime")):
        found = _date_time(ds, date_kw, time_kw, tz)
        if found is not None:
            return found
    return None


def parse_age(value: str) -> int | None:
    """Whole years from a DICOM AS value ("045Y", "006M", "003W", "010D"), capped at 90."""
    value = value.strip().upper()
    if len(value) != 4 or not value[:3].isdigit() or value[3] not in "YMWD":
        return None
    n = int(value[:3])
    years = {"Y": n, "M": n // 12, "W": n // 52, "D": n // 365}[value[3]]
    return min(years, MAX_REPORTED_AGE_YEARS)


def _age_from_birth(ds: Dataset, on: datetime | None) -> int | None:
    raw = _text(ds, "PatientBirthDate")
    if not raw or on is None:
        return None
    try:
        born: date = DA(raw)
    except (ValueError, TypeError):
        return None
    day = on.date()
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return min(years, MAX_REPORTED_AGE_YEARS) if years >= 0 else None


def header_from_dataset(ds: Dataset, path: Path) -> InstanceHeader | None:
    """The header of an instance, or None when it lacks the UIDs a study announcement needs."""
    study_uid = _text(ds, "StudyInstanceUID")
    series_uid = _text(ds, "SeriesInstanceUID")
    sop_uid = _text(ds, "SOPInstanceUID")
    if not (study_uid and series_uid and sop_uid):
        return None
    acquired_at = acquisition_time(ds)
    age = parse_age(_text(ds, "PatientAge"))
    if age is None:
        age = _age_from_birth(ds, acquired_at)
    return InstanceHeader(
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        instance_number=_int(ds, "InstanceNumber"),
        modality=_text(ds, "Modality").upper(),
        body_part=_text(ds, "BodyPartExamined").upper(),
        patient_id=_text(ds, "PatientID"),
        patient_issuer=_text(ds, "IssuerOfPatientID"),
        accession=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        patient_sex=_text(ds, "PatientSex").upper(),
        patient_age_years=age,
        acquired_at=acquired_at,
        institution=_text(ds, "InstitutionName"),
        station=_text(ds, "StationName"),
        path=path,
    )


def read_header(path: Path) -> InstanceHeader | None:
    """Read one file's header (no pixels); None when it is not a usable DICOM instance."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return header_from_dataset(ds, path)


def scan_tree(root: Path, stats: ScanStats | None = None) -> Iterator[InstanceHeader]:
    """Yield the header of every DICOM instance under `root` (or `root` itself if a file).

    Other files (DICOMDIR, README, half-written files) are skipped quietly and counted in
    `stats`. Files are visited in sorted path order so runs are reproducible.
    """
    stats = stats if stats is not None else ScanStats()
    if root.is_file():
        paths: Iterable[Path] = [root]
    else:
        paths = (Path(d) / name for d, names in _sorted_walk(root) for name in names)
    for path in paths:
        if not path.is_file():
            continue
        stats.files += 1
        header = read_header(path)
        if header is None:
            stats.skipped += 1
            continue
        stats.dicom += 1
        yield header


def _sorted_walk(root: Path) -> Iterator[tuple[str, list[str]]]:
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        yield dirpath, sorted(names)


def _instance_order(h: InstanceHeader) -> tuple[bool, int, str, str]:
    return (h.instance_number is None, h.instance_number or 0, h.sop_uid, str(h.path))


@dataclass
class SeriesGroup:
    series_uid: str
    #: Sorted by InstanceNumber (missing numbers last), then SOP UID; one entry per SOP UID.
    instances: list[InstanceHeader] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        return self.instances[0]

    @property
    def modality(self) -> str:
        return next((h.modality for h in self.instances if h.modality), "")

    @property
    def body_part(self) -> str:
        return next((h.body_part for h in self.instances if h.body_part), "")


@dataclass
class StudyGroup:
    study_uid: str
    #: Sorted by series UID.
    series: list[SeriesGroup] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        """The study's reference instance: study-level attributes are read from it."""
        return self.series[0].first

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series)

    def earliest_acquisition(self) -> datetime | None:
        times = [h.acquired_at for s in self.series for h in s.instances if h.acquired_at]
        return min(times) if times else None


def group_instances(headers: Iterable[InstanceHeader]) -> list[StudyGroup]:
    """Group instances by study, then series; the order is independent of the input order.

    A SOP instance found in two files counts once (the file with the smaller path wins).
    """
    by_study: dict[str, dict[str, dict[str, InstanceHeader]]] = {}
    for h in headers:
        sops = by_study.setdefault(h.study_uid, {}).setdefault(h.series_uid, {})
        kept = sops.get(h.sop_uid)
        if kept is None or str(h.path) < str(kept.path):
            sops[h.sop_uid] = h
    return [
        StudyGroup(study_uid, [
            SeriesGroup(series_uid, sorted(sops.values(), key=_instance_order))
            for series_uid, sops in sorted(series.items())
        ])
        for study_uid, series in sorted(by_study.items())
    ]
