"""Turning raw StudyAnnounced bytes into a validated study (pure logic, no I/O)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.reasons import InputRejected, Reason
from streams.schemas import EventKind, validate


def parse_study(raw: bytes | None) -> dict[str, Any]:
    """Decode and validate one StudyAnnounced body, or raise InputRejected with its reason."""
    if not raw:
        raise InputRejected(Reason.INVALID_JSON, "empty message body")
    try:
        study = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputRejected(Reason.INVALID_JSON, f"not JSON: {exc}") from None
    if not isinstance(study, dict):
        raise InputRejected(Reason.SCHEMA_VIOLATION, "body is not a JSON object")
    validate(EventKind.STUDY_ANNOUNCED, study)
    return study
