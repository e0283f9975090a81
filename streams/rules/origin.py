"""Per-hospital intake topics: a hospital can publish only as itself.

Kafka ACLs cannot read a record's body, so a hospital allowed to write `radiology.studies.v1`
could announce studies in another hospital's name. Instead each hospital writes only its own
intake topic, `radiology.intake.<hospital_id>.v1`, under a PREFIXED write ACL on
`radiology.intake.<hospital_id>.` (the trailing dot keeps H001 out of H0012's topics; hospital
ids cannot contain a dot). The broker therefore vouches for the *topic*, and the consuming side
(`check_origin`) vouches that the body's `hospital_id` is the topic's hospital; only then does a
study reach `radiology.studies.v1`, which hospitals cannot write on a secured cluster.

Pure functions, no Kafka: the worker calls `check_origin` on each record it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from streams.contract.reasons import InputRejected, Reason

#: Every intake topic starts with this; the worker's READ ACL is PREFIXED on it.
INTAKE_PREFIX = "radiology.intake."
INTAKE_VERSION = "v1"
#: Same alphabet as the schema's `hospital_id` ($defs/hospital_id): no dot, so prefixes are exact.
_HOSPITAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_INTAKE_TOPIC = re.compile(
    r"^" + re.escape(INTAKE_PREFIX) + r"(?P<hospital>[A-Za-z0-9_-]{1,32})\." + INTAKE_VERSION + "$")
#: Faust/aiokafka subscription pattern for the whole intake family.
INTAKE_PATTERN = _INTAKE_TOPIC.pattern


def _checked(hospital_id: str) -> str:
    if not _HOSPITAL_ID.match(hospital_id):
        raise ValueError(f"not a valid hospital id: {hospital_id!r}")
    return hospital_id


def intake_topic(hospital_id: str) -> str:
    """The one topic `hospital_id` may write StudyAnnounced events to."""
    return f"{INTAKE_PREFIX}{_checked(hospital_id)}.{INTAKE_VERSION}"


def intake_acl_prefix(hospital_id: str) -> str:
    """Resource name of the hospital's PREFIXED write ACL (ends with a dot: exact hospital)."""
    return f"{INTAKE_PREFIX}{_checked(hospital_id)}."


def hospital_of_topic(topic: str) -> str | None:
    """The hospital owning an intake topic, or None for any other topic."""
    m = _INTAKE_TOPIC.match(topic)
    return m.group("hospital") if m else None


def check_origin(topic: str, study: Mapping[str, object]) -> None:
    """Reject a study whose `hospital_id` is not the hospital whose intake topic carried it.

    Records from other topics (the shared studies topic of an unsecured local setup) pass: the
    broker's ACLs decide who may write those. Call after schema validation.
    """
    owner = hospital_of_topic(topic)
    if owner is None:
        return
    claimed = study.get("hospital_id")
    if claimed != owner:
        # Both ids are registered organisation codes, not patient data; safe in the detail.
        shown = claimed if isinstance(claimed, str) and _HOSPITAL_ID.match(claimed) else "?"
        raise InputRejected(Reason.HOSPITAL_MISMATCH,
                            f"hospital_id {shown} announced on the intake topic of {owner}")
