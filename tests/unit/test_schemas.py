"""The event contract in schemas/: well-formed schemas, and they accept and reject what they say."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import (
    MAX_MESSAGE,
    SCHEMA_DIR,
    EventKind,
    SchemaViolation,
    errors,
    schema,
    validate,
)


def example(kind: EventKind, index: int = 0) -> dict[str, Any]:
    """A fresh copy of one of the schema's own examples, to mutate in a test."""
    return copy.deepcopy(schema(kind)["examples"][index])


def assert_rejected(kind: EventKind, event: object, path: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        validate(kind, event)
    assert caught.value.detail.startswith(path), caught.value.detail
    assert any(message.startswith(path) for message in errors(kind, event))


def test_every_schema_file_has_an_event_kind() -> None:
    files = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert files == {kind.filename for kind in EventKind}


@pytest.mark.parametrize("kind", list(EventKind))
def test_schema_is_valid_2020_12_with_identity_and_strict_top_level(kind: EventKind) -> None:
    doc = json.loads(kind.path.read_text())
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://radstream.org/schemas/{kind.filename}"
    assert doc["title"] and doc["description"]
    assert doc["additionalProperties"] is False
    assert set(doc["required"]) <= set(doc["properties"])


@pytest.mark.parametrize("kind", list(EventKind))
def test_examples_validate(kind: EventKind) -> None:
    examples = schema(kind)["examples"]
    assert examples
    for event in examples:
        assert errors(kind, event) == []
        validate(kind, event)


def test_shared_definitions_are_identical_across_files() -> None:
    """Each file is self-contained; a definition they share must say the same everywhere."""
    seen: dict[str, tuple[str, Any]] = {}
    for kind in EventKind:
        for name, definition in schema(kind).get("$defs", {}).items():
            first = seen.setdefault(name, (kind.filename, definition))
            assert first[1] == definition, f"$defs/{name}: {kind.filename} != {first[0]}"


def _required_paths(kind: EventKind) -> list[tuple[EventKind, str]]:
    return [(kind, name) for name in schema(kind)["required"]]


@pytest.mark.parametrize(
    ("kind", "field"), [case for kind in EventKind for case in _required_paths(kind)],
    ids=lambda value: str(value))
def test_each_required_field_is_required(kind: EventKind, field: str) -> None:
    event = example(kind)
    del event[field]
    assert_rejected(kind, event, "$")
    assert f"$: missing required property {field}" in errors(kind, event)


@pytest.mark.parametrize("field", ["series_uid", "modality", "body_part", "instance_count", "uri"])
def test_each_series_field_is_required(field: str) -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    del event["series"][0][field]
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, "$.series[0]")


@pytest.mark.parametrize(("field", "value", "path"), [
    ("modality", "XR", "$.modality"),
    ("priority", "stat", "$.priority"),
    ("patient_sex", "X", "$.patient_sex"),
    ("patient_age_years", 131, "$.patient_age_years"),
    ("patient_age_years", "54", "$.patient_age_years"),
    ("study_uid", "1.2.abc", "$.study_uid"),
    ("study_uid", "1." + "2" * 63, "$.study_uid"),
    ("hospital_id", "gkb 67", "$.hospital_id"),
    ("body_part", "chest", "$.body_part"),
    ("patient_ref", "Ivanov Ivan", "$.patient_ref"),
    ("series", [], "$.series"),
    ("series", "file:///x", "$.series"),
    ("schema_version", "2", "$.schema_version"),
    ("extensions", [], "$.extensions"),
])
def test_study_announced_rejects_bad_values(field: str, value: object, path: str) -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event[field] = value
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, path)


@pytest.mark.parametrize(("field", "value"), [
    ("uri", "ftp://pacs/1"),
    ("uri", "file://relative/path"),
    ("uri", "https://pacs.example/" + "a" * 2048),
    ("instance_count", 0),
    ("instance_count", 1.5),
    ("modality", "ct"),
    ("description", "d" * 65),
])
def test_study_announced_rejects_bad_series(field: str, value: object) -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["series"][0][field] = value
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, f"$.series[0].{field}")


def test_study_announced_rejects_unknown_top_level_field() -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["patient_name"] = "Ivanov^Ivan"
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, "$")
    assert errors(EventKind.STUDY_ANNOUNCED, event) == ["$: unknown property patient_name"]


def test_study_announced_accepts_anything_under_extensions() -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["extensions"] = {"ris.order": {"nested": [1, 2, 3]}, "site": "north"}
    validate(EventKind.STUDY_ANNOUNCED, event)


def test_study_announced_rejects_oversize_series_list() -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["series"] = event["series"] * 1001
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, "$.series")
    event["series"] = event["series"][:1000]
    validate(EventKind.STUDY_ANNOUNCED, event)


@pytest.mark.parametrize("value", [
    "2024-05-14T09:28:41",            # no offset
    "2024-05-14",                     # date only
    "2024-05-14 09:28:41Z",           # space instead of T
    "20240514T092841Z",               # ISO 8601 basic, not RFC 3339
    "2024-13-01T00:00:00Z",           # month 13
    "2024-02-30T00:00:00Z",           # no such day
    "2024-05-14T25:00:00Z",           # hour 25
    "yesterday",
])
def test_bad_date_time_is_rejected(value: str) -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["acquired_at"] = value
    assert_rejected(EventKind.STUDY_ANNOUNCED, event, "$.acquired_at")


@pytest.mark.parametrize("value", [
    "2024-05-14T09:28:41Z", "2024-05-14t09:28:41z", "2024-05-14T09:28:41.123456Z",
    "2024-05-14T12:28:41+03:00", "2024-05-14T09:28:41.5-00:30",
])
def test_good_date_time_is_accepted(value: str) -> None:
    event = example(EventKind.STUDY_ANNOUNCED)
    event["published_at"] = value
    validate(EventKind.STUDY_ANNOUNCED, event)


def test_finding_technical_defect_needs_defect_reason() -> None:
    event = example(EventKind.FINDING, 1)
    assert event["status"] == "technical_defect"
    del event["defect_reason"]
    assert_rejected(EventKind.FINDING, event, "$")
    assert "$: missing required property defect_reason" in errors(EventKind.FINDING, event)


def test_finding_defect_reason_is_a_reason_code() -> None:
    event = example(EventKind.FINDING, 1)
    event["defect_reason"] = "the scanner was sad"
    assert_rejected(EventKind.FINDING, event, "$.defect_reason")


def test_finding_defect_reason_only_with_technical_defect() -> None:
    event = example(EventKind.FINDING, 0)
    event["defect_reason"] = Reason.PIXELS_UNREADABLE.value
    assert_rejected(EventKind.FINDING, event, "$")


@pytest.mark.parametrize("status", ["not_applicable", "technical_defect"])
def test_finding_without_result_has_no_findings(status: str) -> None:
    event = example(EventKind.FINDING, 2 if status == "not_applicable" else 1)
    event["findings"] = example(EventKind.FINDING, 0)["findings"]
    assert_rejected(EventKind.FINDING, event, "$.findings")
    assert "$.findings: must be empty" in errors(EventKind.FINDING, event)


@pytest.mark.parametrize(("field", "value"), [
    ("score", 1.01), ("score", -0.1), ("score", "0.5"), ("threshold", 2), ("positive", 1),
    ("code", "Pleural Effusion"),
])
def test_finding_rejects_bad_scores(field: str, value: object) -> None:
    event = example(EventKind.FINDING, 0)
    event["findings"][0][field] = value
    assert_rejected(EventKind.FINDING, event, f"$.findings[0].{field}")


@pytest.mark.parametrize(("field", "value"), [
    ("status", "failed"), ("service", "Chest_XRay"), ("model", {"name": "chest_xray"}),
    ("produced_at", "now"),
])
def test_finding_rejects_bad_values(field: str, value: object) -> None:
    event = example(EventKind.FINDING, 0)
    event[field] = value
    assert_rejected(EventKind.FINDING, event, f"$.{field}")


@pytest.mark.parametrize("stage", ["queue", "fetch", "preprocess", "infer", "publish"])
def test_latency_stages_are_required_and_non_negative(stage: str) -> None:
    event = example(EventKind.LATENCY)
    event["stages"][stage] = -0.001
    assert_rejected(EventKind.LATENCY, event, f"$.stages.{stage}")
    del event["stages"][stage]
    assert_rejected(EventKind.LATENCY, event, "$.stages")


@pytest.mark.parametrize(("field", "value"), [
    ("end_to_end_s", -1), ("acquisition_to_result_s", "81"), ("batch_size", 0),
    ("batch_size", 2.5), ("priority", "low"),
])
def test_latency_rejects_bad_values(field: str, value: object) -> None:
    event = example(EventKind.LATENCY)
    event[field] = value
    assert_rejected(EventKind.LATENCY, event, f"$.{field}")


def test_deadletter_reason_enum_is_exactly_the_reason_codes() -> None:
    properties = schema(EventKind.DEADLETTER)["properties"]
    assert properties["reason"]["enum"] == [r.value for r in Reason]
    assert set(properties["reason"]["enum"]) == set(Reason)
    finding = schema(EventKind.FINDING)["properties"]
    assert finding["defect_reason"]["enum"] == [r.value for r in Reason]


def test_deadletter_excerpt_need_not_be_json_and_key_may_be_null() -> None:
    event = example(EventKind.DEADLETTER)
    event["payload_excerpt"] = "\x00\ufffd{{{ not json"
    event["key"] = None
    validate(EventKind.DEADLETTER, event)


@pytest.mark.parametrize(("field", "value", "path"), [
    ("reason", "bad_vibes", "$.reason"),
    ("payload_excerpt", "x" * 513, "$.payload_excerpt"),
    ("detail", "x" * 1001, "$.detail"),
    ("key", 42, "$.key"),
    ("origin", {"topic": "radiology.studies.v1", "partition": -1, "offset": 0},
     "$.origin.partition"),
    ("origin", {"topic": "radiology.studies.v1", "partition": 0}, "$.origin"),
])
def test_deadletter_rejects_bad_values(field: str, value: object, path: str) -> None:
    event = example(EventKind.DEADLETTER)
    event[field] = value
    assert_rejected(EventKind.DEADLETTER, event, path)


@pytest.mark.parametrize(("kind", "field", "value"), [
    (EventKind.REVIEW, "radiologist_positive", "yes"),
    (EventKind.REVIEW, "reviewer_ref", "Dr. House"),
    (EventKind.STATS_SNAPSHOT, "window", {"kind": "month", "start": "2024-05-01T00:00:00Z"}),
    (EventKind.STATS_SNAPSHOT, "dimension", {"kind": "patient", "value": "x"}),
    (EventKind.QUALITY_ALERT, "kind", "auc_low"),
    (EventKind.QUALITY_ALERT, "raised_at", "2024-05-14"),
])
def test_other_events_reject_bad_values(kind: EventKind, field: str, value: object) -> None:
    event = example(kind)
    event[field] = value
    assert_rejected(kind, event, f"$.{field}")


def test_stats_counts_are_all_required_non_negative_integers() -> None:
    event = example(EventKind.STATS_SNAPSHOT)
    event["counts"]["positives"] = -1
    assert_rejected(EventKind.STATS_SNAPSHOT, event, "$.counts.positives")
    del event["counts"]["deadletters"]
    assert "$.counts: missing required property deadletters" in errors(
        EventKind.STATS_SNAPSHOT, event)


@pytest.mark.parametrize("kind", list(EventKind))
def test_outputs_and_inputs_reject_unknown_top_level_fields(kind: EventKind) -> None:
    event = example(kind)
    event["unexpected"] = True
    assert_rejected(kind, event, "$")


def test_non_object_body_is_rejected() -> None:
    assert errors(EventKind.STUDY_ANNOUNCED, ["not", "an", "object"]) == [
        "$: expected object, got array"]


def test_violation_is_an_input_rejection_with_the_schema_reason() -> None:
    with pytest.raises(InputRejected) as caught:
        validate(EventKind.FINDING, {})
    assert caught.value.reason is Reason.SCHEMA_VIOLATION


def test_messages_are_short_and_never_echo_values() -> None:
    secret = "IVANOV IVAN IVANOVICH " * 30
    event = example(EventKind.STUDY_ANNOUNCED)
    event["study_description"] = secret
    event["body_part"] = secret
    event["modality"] = secret
    event["patient_age_years"] = secret
    event[secret] = secret
    event["series"][0]["description"] = secret
    found = errors(EventKind.STUDY_ANNOUNCED, event)
    assert len(found) >= 5
    for message in found:
        assert len(message) <= MAX_MESSAGE
        assert "IVANOV" not in message or message.startswith("$: unknown property")
    with pytest.raises(SchemaViolation) as caught:
        validate(EventKind.STUDY_ANNOUNCED, event)
    assert len(caught.value.detail) <= MAX_MESSAGE
