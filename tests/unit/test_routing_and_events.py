"""Routing decisions and the events built from them match the contract."""

from __future__ import annotations

from typing import Any

import pytest

from streams.contract.catalog import NOT_APPLICABLE_SERVICE, catalog, service
from streams.contract.events import deadletter, finding_not_applicable, finding_ok, latency
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate
from streams.rules.intake import parse_study
from streams.rules.routing import route

NOW = "2026-11-26T10:00:00Z"


def study(modality: str = "DX", body_part: str = "CHEST") -> dict[str, Any]:
    return {"study_uid": "1.2.826.0.1.3", "hospital_id": "H001", "device_id": "H001-D01",
            "modality": modality, "body_part": body_part, "priority": "emergency",
            "acquired_at": NOW, "published_at": NOW, "patient_ref": "a" * 32,
            "series": [{"series_uid": "1.2.826.0.1.3.1", "modality": modality,
                        "body_part": body_part, "instance_count": 1,
                        "uri": "file:///data/1.dcm"}]}


@pytest.mark.parametrize(("modality", "body_part", "expected"), [
    ("DX", "CHEST", ["chest-xray"]), ("CR", "CHEST", ["chest-xray"]),
    ("CT", "CHEST", ["chest-ct"]), ("DX", "ELBOW", []), ("MR", "HEAD", []),
])
def test_route(modality: str, body_part: str, expected: list[str]) -> None:
    assert [s.id for s in route(study(modality, body_part), catalog())] == expected


def test_finding_ok_applies_the_catalog_threshold() -> None:
    spec = service("chest-xray")
    threshold = spec.findings[0].threshold
    above = finding_ok(study(), spec, [min(1.0, threshold + 0.01)], NOW)
    below = finding_ok(study(), spec, [max(0.0, threshold - 0.01)], NOW)
    validate(EventKind.FINDING, above)
    assert above["findings"][0]["positive"] is True
    assert below["findings"][0]["positive"] is False
    assert above["findings"][0]["threshold"] == threshold


def test_not_applicable_and_latency_and_deadletter_are_schema_valid() -> None:
    na = finding_not_applicable(study("MR", "KNEE"), NOW)
    validate(EventKind.FINDING, na)
    assert na["service"] == NOT_APPLICABLE_SERVICE and na["findings"] == []
    lat = latency(study(), service("chest-xray"), {"queue": 0.1, "fetch": 0.01, "preprocess": 0.02,
                                          "infer": 0.05, "publish": -0.001}, 0.3, 2.0, 8, NOW)
    validate(EventKind.LATENCY, lat)
    assert lat["stages"]["publish"] == 0.0  # clock skew never yields a negative duration
    dl = deadletter(Reason.INVALID_JSON, "bad", topic="t", partition=1, offset=5, key=b"k",
                    payload=b"\xff" * 1000, produced_at=NOW)
    validate(EventKind.DEADLETTER, dl)
    assert len(dl["payload_excerpt"]) <= 256


def test_parse_study_reasons() -> None:
    import orjson

    assert parse_study(orjson.dumps(study()))["study_uid"] == "1.2.826.0.1.3"
    for raw, reason in [(b"", Reason.INVALID_JSON), (b"{", Reason.INVALID_JSON),
                        (b"[1]", Reason.SCHEMA_VIOLATION),
                        (orjson.dumps({**study(), "priority": "asap"}), Reason.SCHEMA_VIOLATION)]:
        with pytest.raises(InputRejected) as err:
            parse_study(raw)
        assert err.value.reason is reason
