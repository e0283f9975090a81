"""Build the StudyAnnounced event body from a grouped study (pure: no I/O, no Kafka).

The body carries only what the contract (schemas/study-announced.v1.json) allows, and nothing
of the hospital's own text: patient and accession identifiers and every DICOM UID leave the
hospital as keyed pseudonyms scoped to the hospital (services/publisher/pseudonym.py); names,
birth dates, institution and station names never do; body parts and descriptions are reduced to
closed vocabularies (services/publisher/scrub.py); hospital and device ids come from the
hospital's configuration, not from the headers. Each series' `uri` names the first instance
(lowest InstanceNumber) of its staged copy under `<root>/<hospital_id>/`
(services/publisher/stage.py), so no folder or file name of the hospital reaches the bus.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.publisher import scrub
from services.publisher.pseudonym import Pseudonymizer, is_placeholder_id
from services.publisher.scan import InstanceHeader, SeriesGroup, StudyGroup
from services.publisher.stage import staged_uri
from streams.contract.cloudevents import parse_rfc3339, utc_now_rfc3339

PRIORITIES = ("routine", "urgent", "emergency")
#: Modality codes the contract knows; anything else is announced as OT (other).
MODALITIES = frozenset({"CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "OT"})
#: Body part used when BodyPartExamined is missing or unusable.
UNKNOWN_BODY_PART = scrub.UNKNOWN_BODY_PART
UNKNOWN_ID = "unknown"
SCHEMA_VERSION = "1"

_ID_JUNK = re.compile(r"[^A-Za-z0-9_-]+")
#: The contract's hospital_id (schemas/study-announced.v1.json): also a folder name under root.
_HOSPITAL_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def sanitize_id(value: str, max_len: int = 64) -> str:
    """A registry-style id from configured text ("CT room 2/east" -> "CT-room-2-east"), or
    "unknown"."""
    cleaned = _ID_JUNK.sub("-", value.strip()).strip("-")[:max_len].strip("-")
    return cleaned or UNKNOWN_ID


def check_hospital_id(value: str) -> str:
    """The configured hospital id, unchanged, or ValueError: it names the hospital's folder
    under the DICOM root, so it is never rewritten behind the operator's back."""
    if not _HOSPITAL_ID.fullmatch(value):
        raise ValueError("hospital id must be 1-32 letters, digits, '-' or '_' "
                         f"(got {len(value)} characters)")
    return value


def _modality(value: str) -> str:
    return value if value in MODALITIES else "OT"


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _series(series: SeriesGroup, study_uid: str, hospital_id: str,
            pseudonymizer: Pseudonymizer, root: Path) -> dict[str, Any]:
    series_uid = pseudonymizer.uid(series.series_uid, hospital_id=hospital_id)
    item: dict[str, Any] = {
        "series_uid": series_uid,
        "modality": _modality(series.modality),
        "body_part": scrub.body_part(series.body_part),
        "instance_count": len(series.instances),
        "uri": staged_uri(root, hospital_id, study_uid, series_uid),
    }
    description = scrub.description(series.first.series_description)
    if description:
        item["description"] = description
    return item


def _patient_ref(first: InstanceHeader, study_uid: str, hospital_id: str,
                 pseudonymizer: Pseudonymizer) -> str:
    if is_placeholder_id(first.patient_id):
        return pseudonymizer.unlinked_patient_ref(study_uid, hospital_id=hospital_id)
    return pseudonymizer.patient_ref(first.patient_id, hospital_id=hospital_id,
                                     issuer=first.patient_issuer)


def device_id_for(first: InstanceHeader, hospital_id: str, pseudonymizer: Pseudonymizer,
                  devices: dict[str, str] | None = None) -> str:
    """The configured id of the study's device (looked up by DeviceSerialNumber, then
    StationName), else a keyed pseudonym of its identity, else "unknown"."""
    for key in (first.device_serial, first.station):
        if key and devices and key in devices:
            return sanitize_id(devices[key])
    if not any((first.device_serial, first.station, first.manufacturer, first.device_model)):
        return UNKNOWN_ID
    return pseudonymizer.device_ref(first.device_identity, hospital_id=hospital_id)


def build_announcement(study: StudyGroup, *, hospital_id: str, pseudonymizer: Pseudonymizer,
                       root: Path, priority: str = "routine", device_id: str | None = None,
                       devices: dict[str, str] | None = None,
                       published_at: str | None = None) -> dict[str, Any]:
    """The StudyAnnounced body for one study.

    Arguments:
        hospital_id: the configured id of the publishing organisation (checked, not rewritten).
        root: the DICOM root the workers read; the series URIs point into `<root>/<hospital_id>/`
            where stage.stage_announcement must put the files before the event is sent.
        device_id: the configured device id (sanitized); default: from `devices`, else keyed.
        devices: configured device ids by DeviceSerialNumber or StationName.
        published_at: RFC 3339; defaults to now. Also the acquisition time when the DICOM
            header has no usable date.

    Raises ValueError for an unknown priority or a malformed hospital id.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    hospital_id = check_hospital_id(hospital_id)
    published = published_at or utc_now_rfc3339()
    first = study.first
    acquired = study.earliest_acquisition()
    study_uid = pseudonymizer.uid(study.study_uid, hospital_id=hospital_id)
    series = [_series(s, study_uid, hospital_id, pseudonymizer, root) for s in study.series]
    lead = next((s for s in series if s["body_part"] != UNKNOWN_BODY_PART), series[0])
    event: dict[str, Any] = {
        "study_uid": study_uid,
        "hospital_id": hospital_id,
        "device_id": sanitize_id(device_id) if device_id is not None
        else device_id_for(first, hospital_id, pseudonymizer, devices),
        "modality": lead["modality"],
        "body_part": lead["body_part"],
        "priority": priority,
        "acquired_at": _rfc3339(acquired) if acquired else _rfc3339(parse_rfc3339(published)),
        "published_at": published,
        "patient_ref": _patient_ref(first, study.study_uid, hospital_id, pseudonymizer),
        "series": series,
        "schema_version": SCHEMA_VERSION,
    }
    if not is_placeholder_id(first.accession):
        event["accession_ref"] = pseudonymizer.accession_ref(first.accession, hospital_id)
    description = scrub.description(first.study_description)
    if description:
        event["study_description"] = description
    if first.patient_sex in ("M", "F", "O"):
        event["patient_sex"] = first.patient_sex
    if first.patient_age_years is not None:
        event["patient_age_years"] = first.patient_age_years
    return event
