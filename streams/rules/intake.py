"""Turning raw StudyAnnounced bytes into a validated study (pure logic, no I/O).

Checks run cheapest first and each one bounds the next: size before JSON parsing, nesting depth
before anything walks the parsed body, version before schema validation (a v2 body is not a
broken v1 body), then the schema, which bounds series counts and string lengths.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streams.contract import topics
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import (
    MAX_JSON_DEPTH,
    SCHEMA_VERSION,
    TOO_DEEP,
    EventKind,
    SchemaViolation,
    nested_deeper_than,
    validate,
)

#: Largest StudyAnnounced body accepted (bytes); checked before the body is parsed.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

#: Headers are (name, value) pairs as Kafka clients give them, or a mapping.
Headers = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]]

_CE_TYPE = re.compile(r"^(?P<type>.+)\.v(?P<version>[0-9]+)$")
#: "radiology.study.announced" without its version suffix.
_STUDY_TYPE = topics.STUDIES.event_type.rsplit(".v", 1)[0]


def _header(headers: Headers | None, name: str) -> str | None:
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def check_event_type(headers: Headers | None) -> None:
    """A ce_type header is optional on input; when present it must name StudyAnnounced v1."""
    ce_type = _header(headers, "ce_type")
    if ce_type is None or ce_type == topics.STUDIES.event_type:
        return
    shown = ce_type[:80]
    m = _CE_TYPE.match(ce_type)
    if m and m["type"] == _STUDY_TYPE:
        raise InputRejected(Reason.UNSUPPORTED_VERSION,
                            f"ce_type {shown!r}: this worker reads version {SCHEMA_VERSION}")
    raise InputRejected(Reason.SCHEMA_VIOLATION,
                        f"ce_type {shown!r} is not {topics.STUDIES.event_type}")


def parse_study(raw: bytes | None, *, headers: Headers | None = None,
                max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> dict[str, Any]:
    """Decode and validate one StudyAnnounced body, or raise InputRejected with its reason."""
    if not raw:
        raise InputRejected(Reason.INVALID_JSON, "empty message body")
    if len(raw) > max_bytes:
        raise InputRejected(Reason.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
    check_event_type(headers)
    try:
        study = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputRejected(Reason.INVALID_JSON, f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(study, dict):
        raise InputRejected(Reason.SCHEMA_VIOLATION, "body is not a JSON object")
    # Free-form `extensions` pass the schema at any depth, but an accepted study is written
    # again (work items, its fingerprint) by orjson, which writes only 254 levels.
    if nested_deeper_than(study, MAX_JSON_DEPTH):
        raise SchemaViolation(TOO_DEEP)
    version = study.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, str) and version != SCHEMA_VERSION:  # other types: schema_violation
        raise InputRejected(Reason.UNSUPPORTED_VERSION,
                            f"schema_version {version[:16]!r}: this worker reads {SCHEMA_VERSION}")
    validate(EventKind.STUDY_ANNOUNCED, study)
    return study


#: Fields that may differ between two announcements of the same study without a conflict.
VOLATILE_FIELDS = frozenset({"published_at"})


def study_fingerprint(study: Mapping[str, Any]) -> str:
    """A compact digest of what a study announcement says, `published_at` aside: two
    announcements with the same study_uid and different fingerprints contradict each other.
    Defined on every study parse_study accepts (its depth check keeps them writable); key
    order does not matter."""
    stable = {k: v for k, v in study.items() if k not in VOLATILE_FIELDS}
    digest = hashlib.blake2b(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return digest.hexdigest()
