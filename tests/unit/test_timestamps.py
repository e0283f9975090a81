"""One reader for every timestamp (streams.contract.cloudevents.parse_rfc3339), and it reads
exactly what the contract's `date-time` check accepts: a timestamp that passes validation can
never make a later reader raise (an announcement with `...t...z` once made the inference agent
fail after it had sent the study's Findings)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.analytics.windows import labels
from streams.contract.cloudevents import parse_rfc3339, utc_now_rfc3339
from streams.contract.schemas import EventKind, is_date_time, schema, validator
from tests.fuzz.strategies import timestamp_parts, timestamp_text
from tests.unit.test_schemas_compiled import _compiled_accepts

#: The JSON Schema test suite's date-time cases (draft 2020-12, optional/format/date-time.json).
SUITE = [
    ("1963-06-19T08:30:06.283185Z", True),
    ("1963-06-19T08:30:06Z", True),
    ("1937-01-01T12:00:27.87+00:20", True),
    ("1990-12-31T15:59:50.123-08:00", True),
    ("1998-12-31T23:59:60Z", True),
    ("1998-12-31T15:59:60.123-08:00", True),
    ("1998-12-31T23:59:61Z", False),
    ("1998-12-31T23:58:60Z", False),
    ("1998-12-31T22:59:60Z", False),
    ("1990-02-31T15:59:59.123-08:00", False),
    ("1990-12-31T15:59:59-24:00", False),
    ("1963-06-19T08:30:06.28123+01:00Z", False),
    ("1990-12-31T24:00:00Z", False),
    ("1990-12-31T15:60:00Z", False),
    ("1990-12-31T10:00:00+10:60", False),
    ("06/19/1963 08:30:06 PST", False),
    ("1963-06-19t08:30:06.283185z", True),
    ("2013-350T01:01:01", False),
    ("1963-6-19T08:30:06.283185Z", False),
    ("1963-06-1T08:30:06.283185Z", False),
    ("1963-06-1\u09ea T00:00:00Z".replace(" ", ""), False),  # a Bengali digit four
    ("1963-06-11T0\u09ea:00:00Z", False),
    ("+11963-06-19T08:30:06.283185Z", False),
    ("1985-04-12T00:59:59.999999999999999Z", True),
]

#: Ours: what fromisoformat took or refused that RFC 3339 does not, and the range edges.
OURS = [
    ("2024-03-01T12:00:00z", True), ("2024-03-01t12:00:00Z", True),
    ("2024-03-01T12:00:00-00:00", True), ("2024-03-01T12:00:00+23:59", True),
    ("2024-03-01 12:00:00Z", False), ("2024-03-01T12:00:00,5Z", False),
    ("2024-03-01T12:00:00+0530", False), ("2024-03-01T12:00Z", False),
    ("2024-03-01T12:00:00", False), ("20240301T120000Z", False),
    ("2024-03-01T12:00:00.Z", False), ("2024-03-01T12:00:00Z\n", False), ("", False),
    ("0000-01-01T00:00:00Z", False), ("0001-01-01T00:00:00Z", True),
    ("0001-01-01T00:00:00+01:00", False), ("0001-01-01T00:00:00-01:00", True),
    ("9999-12-31T23:59:59Z", True), ("9999-12-31T23:59:59-00:01", False),
    ("2016-12-31T23:59:60Z", True), ("2017-01-01T00:59:60+01:00", True),
]


@pytest.mark.parametrize(("text", "ok"), SUITE + OURS)
def test_reader_and_format_check_agree_with_rfc3339(text: str, ok: bool) -> None:
    assert is_date_time(text) is ok
    if ok:
        assert parse_rfc3339(text).tzinfo is not None
    else:
        with pytest.raises(ValueError):
            parse_rfc3339(text)


def test_lower_case_t_and_z_read_as_upper_case() -> None:
    assert parse_rfc3339("2024-03-01t12:00:00.5z") == datetime(2024, 3, 1, 12, 0, 0, 500000,
                                                               tzinfo=UTC)


def test_a_leap_second_reads_as_the_last_microsecond_of_its_day() -> None:
    at = parse_rfc3339("1998-12-31T15:59:60.5-08:00")
    assert at == datetime(1998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert labels(at)[1] == ("day", "1998-12-31")


def test_fractions_beyond_microseconds_are_truncated() -> None:
    assert parse_rfc3339("2024-03-01T12:00:00.123456999Z").microsecond == 123456
    assert parse_rfc3339("2024-03-01T12:00:00.1Z").microsecond == 100000


def test_our_own_timestamps_read_back() -> None:
    now = utc_now_rfc3339()
    assert is_date_time(now)
    assert abs(parse_rfc3339(now) - datetime.now(UTC)) < timedelta(minutes=1)


def test_error_messages_do_not_repeat_the_value() -> None:
    for text in ("9999-99-99T99:99:99Z", "1990-12-31T10:00:00+10:60", "2024-02-30T00:00:00Z",
                 "secret-2024"):
        with pytest.raises(ValueError) as info:
            parse_rfc3339(text)
        assert text not in str(info.value) and "99" not in str(info.value)


# --- property: the check, the reader and an independent reading of RFC 3339 agree ----------

def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_days(y: int, m: int) -> int:
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]


_FIRST = _days_from_civil(1, 1, 1) * 86400
_END = _days_from_civil(10000, 1, 1) * 86400


def _oracle(p: dict[str, Any]) -> int | None:
    """RFC 3339 read by hand, without datetime: the UTC second the text names (a leap second
    counted as its minute's 59th), or None when it is not a valid date-time we can represent."""
    if not (p["year"] >= 1 and 1 <= p["month"] <= 12
            and 1 <= p["day"] <= _month_days(p["year"], p["month"])
            and p["hour"] <= 23 and p["minute"] <= 59 and p["second"] <= 60):
        return None
    offset_s = 0
    if not isinstance(p["offset"], str):
        sign, hours, minutes = p["offset"]
        if hours > 23 or minutes > 59:
            return None
        offset_s = (hours * 3600 + minutes * 60) * (1 if sign == "+" else -1)
    local = (_days_from_civil(p["year"], p["month"], p["day"]) * 86400 + p["hour"] * 3600
             + p["minute"] * 60 + min(p["second"], 59))
    utc = local - offset_s
    if not _FIRST <= utc < _END:
        return None
    if p["second"] == 60 and utc % 86400 // 60 != 23 * 60 + 59:
        return None
    return utc


#: The contract bounds timestamps' length too (the one check beyond the format).
_MAX_LENGTH = schema(EventKind.REVIEW)["$defs"]["timestamp"]["maxLength"]


def _review_at(text: str) -> dict[str, Any]:
    review = copy.deepcopy(schema(EventKind.REVIEW)["examples"][0])
    review["reviewed_at"] = text
    return review


def _reads(text: str) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def _check(text: str) -> None:
    """The properties every string must have, valid or not."""
    at = _reads(text)
    assert is_date_time(text) is (at is not None)
    review = _review_at(text)
    valid = at is not None and len(text) <= _MAX_LENGTH
    assert _compiled_accepts(EventKind.REVIEW, review) is valid
    assert validator(EventKind.REVIEW).is_valid(review) is valid
    if at is None:
        return
    # Round trip: written again it reads as the same instant and offset.
    again = parse_rfc3339(at.isoformat())
    assert again == at and again.utcoffset() == at.utcoffset()
    assert parse_rfc3339(text.swapcase() if "T" in text.upper() else text) == at
    # Every use downstream: epoch seconds (latency), UTC windows (statistics).
    at.timestamp()
    labels(at)


FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(timestamp_parts())
def test_grammar_generated_timestamps(p: dict[str, Any]) -> None:
    text = timestamp_text(p)
    _check(text)
    expected = _oracle(p)
    at = _reads(text)
    assert (at is not None) is (expected is not None), text
    if at is not None and expected is not None:
        micro = 999_999 if p["second"] == 60 else \
            int((p["fraction"] or "0")[:6].ljust(6, "0"))
        assert at.timestamp() == pytest.approx(expected + micro / 1e6, abs=1e-6)


_VALID = st.sampled_from([t for t, ok in SUITE + OURS if ok])


@FUZZ
@given(st.one_of(
    st.text(max_size=40),
    st.text("0123456789-:.+TtZz ", max_size=40),
    st.tuples(_VALID, st.integers(0, 40), st.text(max_size=3), st.integers(0, 3)).map(
        lambda v: v[0][:v[1]] + v[2] + v[0][v[1] + v[3]:]),
))
def test_any_string(text: str) -> None:
    _check(text)
