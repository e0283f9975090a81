"""CloudEvents 1.0 binary-mode Kafka headers for the events radstream produces.

Binary mode keeps the JSON body equal to the contract's schema; the envelope lives in headers
(`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`, `content-type`). On input the
headers are optional: a hospital producing with plain kcat must work.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


def utc_now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ce_headers(event_type: str, source: str, *, event_id: str | None = None,
               time: str | None = None) -> list[tuple[str, bytes]]:
    """Headers for one event, as the (name, bytes) pairs both Kafka clients accept."""
    return [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", (event_id or uuid.uuid4().hex).encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_time", (time or utc_now_rfc3339()).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (with `Z` or an offset) to an aware datetime."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return dt
