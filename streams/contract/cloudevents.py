"""CloudEvents 1.0 binary-mode Kafka headers for the events radstream produces.

Binary mode keeps the JSON body equal to the contract's schema; the envelope lives in headers
(`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`, `content-type`). On input the
headers are optional: a hospital producing with plain kcat must work.

Timestamps, in headers and bodies alike, are RFC 3339: written by :func:`utc_now_rfc3339` and
read only by :func:`parse_rfc3339`, which is also the contract's `date-time` check.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from functools import cache

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


#: RFC 3339 section 5.6 `date-time`, ASCII digits only: full-date "T" full-time, where T and Z
#: may be lower case (section 5.6 note), the fraction has any number of digits and the offset is
#: Z or +hh:mm / -hh:mm.
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))", re.ASCII)


@cache  # at most 2 x 24 x 60 offsets
def _offset(sign: str, hours: str, minutes: str) -> timezone:
    if hours > "23" or minutes > "59":  # two ASCII digits each: string order is numeric
        raise ValueError("RFC 3339 offset out of range")
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == "-" else offset)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 `date-time` to an aware datetime: the one reader of every timestamp.

    It is also the contract's `date-time` format check (streams.contract.schemas.is_date_time),
    so a timestamp passes validation exactly when it parses here. Beyond the grammar: calendar
    and clock ranges are checked, offsets are at most 23:59, and a leap second (`:60`) is taken
    only at 23:59 UTC, as the JSON Schema test suite has it; Python has no 60th second, so it
    reads as 23:59:59.999999 of the same day. Fractions beyond microseconds are truncated. The
    instant must also exist in UTC within years 1..9999, so that every accepted timestamp can
    be converted (statistics windows are UTC).

    Raises:
        ValueError: for anything else, with a message that never repeats the value.
    """
    m = _DATE_TIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    tz = UTC if sign is None else _offset(sign, off_h, off_m)
    leap = second == "60"
    micro = 999_999 if leap else int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        # datetime checks month, day of month, hour, minute and second (60 is ours to judge).
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute),
                      59 if leap else int(second), micro, tzinfo=tz)
        if leap or year in ("0001", "9999"):
            utc = dt.astimezone(UTC)  # the first and last years may leave the range in UTC
            if leap and (utc.hour, utc.minute) != (23, 59):
                raise ValueError("RFC 3339 leap second away from 23:59 UTC")
    except OverflowError:
        raise ValueError("RFC 3339 date-time out of range") from None
    return dt
