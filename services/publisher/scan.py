"""Read DICOM headers from a folder tree and group them into studies and series.

`read_header` and `scan_tree` are the I/O (pixel data is never read); `group_instances` is pure.

A hospital's folder is hostile input too: a file can be cut short, deflate to gigabytes, nest
sequences a thousand deep or carry a time zone offset of +99:00. Each such file is skipped and
counted by reason in `ScanStats` (the reason codes are the worker's, streams.contract.reasons),
never allowed to stop the scan, and read under the worker's own bounds
(streams.imaging.dicom_io), so the publisher is no easier to knock over than the worker.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM

from streams.contract.cloudevents import parse_rfc3339
from streams.contract.reasons import InputRejected, Reason
from streams.imaging import dicom_io
from streams.imaging.dicom_io import ParseLimits

#: Marks a folder the publisher staged for the workers (services/publisher/stage.py): a later
#: scan of a tree that contains it must not announce the staged copies a second time.
STAGED_MARKER = ".radstream-staged"
#: Why a file was skipped without a log line: it was never a DICOM instance (README, DICOMDIR).
QUIET_REASONS = frozenset({Reason.NOT_DICOM})
#: The worker's own per-file bounds (bytes, inflated bytes, elements, parse time).
WORKER_LIMITS = ParseLimits()
#: Reason for a DICOM file without the UIDs an announcement needs.
MISSING_UIDS = "missing_uids"

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
    #: What identifies the device (never sent: a configured id or a keyed pseudonym is).
    station: str
    device_serial: str
    manufacturer: str
    device_model: str
    path: Path

    @property
    def device_identity(self) -> str:
        """The device's identity as one string, the input of its keyed pseudonym."""
        return "\x00".join((self.manufacturer, self.device_model, self.device_serial,
                             self.station))


@dataclass
class ScanStats:
    """What `scan_tree` saw: every regular file is either a DICOM instance or skipped."""

    files: int = 0
    dicom: int = 0
    skipped: int = 0
    #: Skipped files by reason code (not_dicom, dicom_truncated, file_too_large, ...).
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def bad(self) -> int:
        """Skipped files that looked like DICOM but could not be used."""
        return sum(n for reason, n in self.reasons.items() if reason not in QUIET_REASONS)


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


#: Real UTC offsets lie within -12:00 .. +14:00; anything else is a damaged header.
_MAX_OFFSET = timedelta(hours=14)


def _offset(ds: Dataset) -> timezone:
    """TimezoneOffsetFromUTC ("+0300") if present and plausible; otherwise times are UTC."""
    raw = _text(ds, "TimezoneOffsetFromUTC")
    if len(raw) == 5 and raw[0] in "+-" and raw[1:].isdigit() and int(raw[3:5]) < 60:
        minutes = int(raw[1:3]) * 60 + int(raw[3:5])
        offset = timedelta(minutes=-minutes if raw[0] == "-" else minutes)
        if abs(offset) <= _MAX_OFFSET:
            return timezone(offset)
    return UTC


def _usable(dt: datetime) -> datetime | None:
    """``dt`` if it survives the contract's own timestamp parser once written as RFC 3339 in
    UTC (the worker parses it with the same function), else None: a year 9999 with a negative
    offset overflows, a year 1 is no acquisition time."""
    try:
        text = dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
        parse_rfc3339(text)
    except (ValueError, OverflowError):
        return None
    return dt


def _date_time(ds: Dataset, date_kw: str, time_kw: str, tz: timezone) -> datetime | None:
    raw_date = _text(ds, date_kw)
    if not raw_date:
        return None
    try:
        day: date = DA(raw_date)
        raw_time = _text(ds, time_kw)
        clock: time = TM(raw_time) if raw_time else time(0)
    except (ValueError, TypeError, OverflowError):
        return None
    if not isinstance(day, date) or not isinstance(clock, time):
        return None
    return _usable(datetime.combine(day, clock.replace(tzinfo=None), tzinfo=tz))


def acquisition_time(ds: Dataset) -> datetime | None:
    """When the images were made: AcquisitionDateTime, else acquisition, series, study date+time."""
    tz = _offset(ds)
    raw = _text(ds, "AcquisitionDateTime")
    if raw:
        try:
            dt: datetime = DT(raw)
        except (ValueError, TypeError, OverflowError):
            dt = None  # type: ignore[assignment]
        if isinstance(dt, datetime):
            found = _usable(dt if dt.tzinfo is not None else dt.replace(tzinfo=tz))
            if found is not None:
                return found
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
    except (ValueError, TypeError, OverflowError):
        return None
    if not isinstance(born, date):
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
        station=_text(ds, "StationName"),
        device_serial=_text(ds, "DeviceSerialNumber"),
        manufacturer=_text(ds, "Manufacturer"),
        device_model=_text(ds, "ManufacturerModelName"),
        path=path,
    )


#: How a file is named in the bounded parser's messages: never its path (the publisher logs
#: the path itself, locally, next to the reason).
_WHAT = "the file"


def read_dataset_header(path: Path, limits: ParseLimits = WORKER_LIMITS) -> Dataset:
    """The header of one file (up to Pixel Data), parsed under the worker's bounds: bytes read
    and inflated, data elements, parse time (streams.imaging.dicom_io.ParseLimits).

    Any transfer syntax is read: the worker, not the publisher, decides what it can decode.

    Raises:
        InputRejected: with the worker's reason (not_dicom, file_too_large, dicom_truncated,
            dicom_unreadable, dicom_too_many_elements, dicom_parse_timeout, ...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputRejected(Reason.FILE_UNREADABLE, "cannot be opened") from exc
    try:
        return dicom_io.read_header_dataset_fd(fd, _WHAT, limits)
    except InputRejected:
        raise
    except RecursionError as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, "sequences nested too deep") from exc
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise InputRejected(Reason.DICOM_UNREADABLE, type(exc).__name__) from exc
    finally:
        os.close(fd)


def read_header(path: Path, limits: ParseLimits = WORKER_LIMITS) -> InstanceHeader:
    """Read one file's header (no pixels).

    Raises:
        InputRejected: the file is not a usable DICOM instance; ``reason`` says why (a file
            without Study, Series or SOP Instance UID: dicom_unreadable with the detail
            MISSING_UIDS, which scan_tree counts as ``missing_uids``).
    """
    ds = read_dataset_header(path, limits)
    try:
        header = header_from_dataset(ds, path)
    except RecursionError as exc:
        raise InputRejected(Reason.DICOM_UNREADABLE, "sequences nested too deep") from exc
    except Exception as exc:  # a damaged value converts lazily, on first access
        raise InputRejected(Reason.DICOM_UNREADABLE, type(exc).__name__) from exc
    if header is None:
        raise InputRejected(Reason.DICOM_UNREADABLE, MISSING_UIDS)
    return header


#: Where a skipped file is reported: the hospital's own local log, never the bus.
SkipLog = Callable[[Path, str], None]


def scan_tree(root: Path, stats: ScanStats | None = None,
              on_skip: SkipLog | None = None) -> Iterator[InstanceHeader]:
    """Yield the header of every DICOM instance under `root` (or `root` itself if a file).

    Files that are not DICOM (DICOMDIR, README) are skipped quietly; broken DICOM files are
    skipped, counted by reason in `stats` and passed to `on_skip` (path, reason). Folders the
    publisher staged (STAGED_MARKER) are not descended. Files are visited in sorted path order
    so runs are reproducible.
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
        try:
            header = read_header(path)
        except InputRejected as exc:
            reason = MISSING_UIDS if exc.detail == MISSING_UIDS else str(exc.reason)
            stats.skipped += 1
            stats.reasons[reason] += 1
            if on_skip is not None and exc.reason not in QUIET_REASONS:
                on_skip(path, reason)
            continue
        stats.dicom += 1
        yield header


def _sorted_walk(root: Path) -> Iterator[tuple[str, list[str]]]:
    for dirpath, dirs, names in os.walk(root):
        if STAGED_MARKER in names:
            dirs.clear()
            continue
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
