"""Every hostile event in the generated corpus is rejected by intake with its precise reason,
before any expensive work (the size check comes before JSON parsing)."""

from __future__ import annotations

import itertools

import orjson
import pytest

from services.synth.hostile import announcement, hostile_events
from streams.contract.reasons import InputRejected, Reason
from streams.rules.intake import DEFAULT_MAX_EVENT_BYTES, parse_study, study_fingerprint

NOW, LATER = "2024-03-01T12:00:00Z", "2024-03-01T12:05:00Z"
GOOD_URI = "file:///data/dicom/H999/1.dcm"


def _events() -> list:
    counter = itertools.count(1)
    return hostile_events(lambda: f"2.25.{next(counter)}", GOOD_URI, published_at=NOW,
                          later=LATER)


def test_each_rejected_event_has_its_reason() -> None:
    got, expected = {}, {}
    for e in _events():
        if e.reason is None or e.reason is Reason.DUPLICATE_CONFLICT:
            continue  # valid bodies: the router's fingerprint table judges these
        expected[e.name] = e.reason
        with pytest.raises(InputRejected) as exc:
            parse_study(e.value, headers=e.headers)
        got[e.name] = exc.value.reason
    assert got == expected


def test_duplicate_cases_are_valid_events_with_the_same_uid() -> None:
    dup = {e.name: e for e in _events() if e.name.startswith("duplicate-")}
    studies = {name: parse_study(e.value) for name, e in dup.items()}
    assert len({s["study_uid"] for s in studies.values()}) == 1
    first = study_fingerprint(studies["duplicate-first"])
    assert study_fingerprint(studies["duplicate-identical"]) == first
    assert study_fingerprint(studies["duplicate-conflict"]) != first


def test_size_is_checked_before_parsing() -> None:
    not_even_json = b"{" * (DEFAULT_MAX_EVENT_BYTES + 1)
    with pytest.raises(InputRejected) as exc:
        parse_study(not_even_json)
    assert exc.value.reason is Reason.PAYLOAD_TOO_LARGE
    with pytest.raises(InputRejected) as exc:
        parse_study(orjson.dumps(announcement("2.25.1", GOOD_URI, published_at=NOW)),
                    max_bytes=100)
    assert exc.value.reason is Reason.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("headers", [
    None, [], {"ce_type": "radiology.study.announced.v1"},
    [("ce_type", b"radiology.study.announced.v1"), ("content-type", b"application/json")],
])
def test_valid_event_with_or_without_headers(headers: object) -> None:
    body = announcement("2.25.1", GOOD_URI, published_at=NOW)
    assert parse_study(orjson.dumps(body), headers=headers) == body  # type: ignore[arg-type]


@pytest.mark.parametrize(("version", "reason"), [
    ("2", Reason.UNSUPPORTED_VERSION), ("1.1", Reason.UNSUPPORTED_VERSION),
    (1, Reason.SCHEMA_VIOLATION), (None, Reason.SCHEMA_VIOLATION),
])
def test_schema_version(version: object, reason: Reason) -> None:
    body = {**announcement("2.25.1", GOOD_URI, published_at=NOW), "schema_version": version}
    with pytest.raises(InputRejected) as exc:
        parse_study(orjson.dumps(body))
    assert exc.value.reason is reason


def test_fingerprint_ignores_published_at_and_key_order() -> None:
    a = announcement("2.25.1", GOOD_URI, published_at=NOW)
    b = dict(reversed(list({**a, "published_at": LATER}.items())))
    assert study_fingerprint(a) == study_fingerprint(b)
    assert study_fingerprint(a) != study_fingerprint({**a, "acquired_at": LATER})
    assert len(study_fingerprint(a)) == 32


def test_a_rejection_crosses_a_process_boundary_with_its_reason() -> None:
    """Preprocessing runs in worker processes: what they raise comes back pickled."""
    import pickle

    from streams.contract.reasons import InputRejected, Reason
    from streams.contract.schemas import SchemaViolation

    for exc in (InputRejected(Reason.DICOM_TRUNCATED, "ends early"), SchemaViolation("$.x")):
        back = pickle.loads(pickle.dumps(exc))
        assert isinstance(back, InputRejected)
        assert (back.reason, back.detail, str(back)) == (exc.reason, exc.detail, str(exc))
