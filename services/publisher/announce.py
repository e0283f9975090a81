"""Build the StudyAnnounced event body from a grouped study (pure: no I/O, no Kafka).

The body carries only what the contract (schemas/study-announced.v1.json) allows: patient and
accession identifiers leave the hospital as keyed pseudonyms; names and birth dates never do.
For a multi-instance series `uri` is the `file://` URI of its first instance (lowest
InstanceNumber); the other instances sit in the same folder.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import InstanceHeader, SeriesGroup, StudyGroup
from streams.contract.cloudevents import parse_rfc3339, utc_now_rfc3339

PRIORITIES = ("routine", "urgent", "emergency")
#: Modality codes the contract knows; anything else is announced as OT (other).
MODALITIES = frozenset({"CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "OT"})
#: Body part used when BodyPartExamined is missing or unusable.
UNKNOWN_BODY_PART = "UNKNOWN"
UNKNOWN_ID = "unknown"
SCHEMA_VERSION = "1"

_ID_JUNK = re.compile(r"[^A-Za-z0-9_-]+")
_BODY_PART_JUNK = re.compile(r"[^A-Z0-9_ ]+")
_DESCRIPTION_MAX = 64


def sanitize_id(value: str, max_len: int = 64) -> str:
    """A registry-style id from free text ("City Hosp. #1" -> "City-Hosp-1"), or "unknown"."""
    cleaned = _ID_JUNK.sub("-", value.strip()).strip("-")[:max_len].strip("-")
    return cleaned or UNKNOWN_ID


def _modality(value: str) -> str:
    return value if value in MODALITIES else "OT"


def _body_part(value: str) -> str:
    cleaned = _BODY_PART_JUNK.sub("", value.upper()).strip()[:16].strip()
    return cleaned or UNKNOWN_BODY_PART


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _series(series: SeriesGroup) -> dict[str, Any]:
    first = series.first
    item: dict[str, Any] = {
        "series_uid": series.series_uid,
        "modality": _modality(series.modality),
        "body_part": _body_part(series.body_part),
        "instance_count": len(series.instances),
        "uri": first.path.as_uri(),
    }
    if first.series_description:
        item["description"] = first.series_description[:_DESCRIPTION_MAX]
    return item


def _patient_ref(first: InstanceHeader, study_uid: str, pseudonymizer: Pseudonymizer) -> str:
    if first.patient_id:
        return pseudonymizer.patient_ref(first.patient_id, first.patient_issuer)
    return pseudonymizer.unlinked_patient_ref(study_uid)


def build_announcement(study: StudyGroup, *, hospital_id: str, pseudonymizer: Pseudonymizer,
                       priority: str = "routine", device_id: str | None = None,
                       published_at: str | None = None) -> dict[str, Any]:
    """The StudyAnnounced body for one study.

    Arguments:
        hospital_id: the registered id of the publishing organisation (sanitized here).
        device_id: defaults to the study's StationName, sanitized.
        published_at: RFC 3339; defaults to now. Also the acquisition time when the DICOM
            header has no usable date.

    Raises ValueError for an unknown priority or a series whose file path is not absolute.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    published = published_at or utc_now_rfc3339()
    first = study.first
    acquired = study.earliest_acquisition()
    series = [_series(s) for s in study.series]
    lead = next((s for s in series if s["body_part"] != UNKNOWN_BODY_PART), series[0])
    event: dict[str, Any] = {
        "study_uid": study.study_uid,
        "hospital_id": sanitize_id(hospital_id, 32),
        "device_id": sanitize_id(device_id if device_id is not None else first.station),
        "modality": lead["modality"],
        "body_part": lead["body_part"],
        "priority": priority,
        "acquired_at": _rfc3339(acquired) if acquired else _rfc3339(parse_rfc3339(published)),
        "published_at": published,
        "patient_ref": _patient_ref(first, study.study_uid, pseudonymizer),
        "series": series,
        "schema_version": SCHEMA_VERSION,
    }
    if first.accession:
        event["accession_ref"] = pseudonymizer.accession_ref(first.accession,
                                                             event["hospital_id"])
    if first.study_description:
        event["study_description"] = first.study_description[:_DESCRIPTION_MAX]
    if first.patient_sex in ("M", "F", "O"):
        event["patient_sex"] = first.patient_sex
    if first.patient_age_years is not None:
        event["patient_age_years"] = first.patient_age_years
    return event
