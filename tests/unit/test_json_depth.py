"""JSON nested deeper than the worker can write again (orjson: 254 levels) or explain
(jsonschema's messages repr the value: about 1000) ends as `schema_violation`, or as
`invalid_json` past orjson's own reading limit (1024), never as `internal_error`: the router
fingerprints and forwards every study it accepts, and validate explains every refusal."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from services.synth.hostile import announcement
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import (
    MAX_JSON_DEPTH,
    EventKind,
    SchemaViolation,
    errors,
    nested_deeper_than,
    schema,
    validate,
)
from streams.rules.intake import parse_study, study_fingerprint

VALID = announcement("2.25.42", "file:///data/dicom/H1/1.dcm",
                     published_at="2024-03-01T12:00:00Z")


def _nested(levels: int) -> bytes:
    """`levels` arrays inside one another, as JSON text (no Python recursion to build)."""
    return b"[" * levels + b"]" * levels


def _with_extension(levels: int) -> bytes:
    """VALID with an extension value `levels` deep (the body itself adds two levels)."""
    body = orjson.dumps({**VALID, "extensions": {"site.x": 0}})
    return body.replace(b'"site.x":0', b'"site.x":' + _nested(levels))


@pytest.mark.parametrize(("levels", "depth"), [(0, 0), (1, 1), (5, 5), (40, 40)])
def test_depth_is_counted_in_levels(levels: int, depth: int) -> None:
    value = orjson.loads(_nested(levels)) if levels else "scalar"
    assert not nested_deeper_than(value, depth)
    assert nested_deeper_than(value, depth - 1) is (depth > 0)
    assert not nested_deeper_than({"a": [{"b": []}]}, 4) and nested_deeper_than({"a": [{}]}, 2)


def test_the_deepest_accepted_study_is_fingerprinted_and_written() -> None:
    study = parse_study(_with_extension(MAX_JSON_DEPTH - 2))
    assert len(study_fingerprint(study)) == 32
    assert orjson.loads(orjson.dumps(study)) == study


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH - 1, 253, 300, 1000, 1021])
def test_deeper_studies_are_schema_violations(levels: int) -> None:
    """Up to 1021 levels here orjson reads the body; from 253 it could not write it back."""
    with pytest.raises(InputRejected) as info:
        parse_study(_with_extension(levels))
    assert info.value.reason is Reason.SCHEMA_VIOLATION
    assert "nested deeper" in info.value.detail


@pytest.mark.parametrize("levels", [1023, 5000])
def test_past_orjsons_reading_limit_is_invalid_json(levels: int) -> None:
    with pytest.raises(InputRejected) as info:
        parse_study(_with_extension(levels))
    assert info.value.reason is Reason.INVALID_JSON


@pytest.mark.parametrize("kind", [EventKind.REVIEW, EventKind.STUDY_ANNOUNCED])
@pytest.mark.parametrize("levels", [40, 990, 1020])
def test_validate_explains_deep_values_without_recursing(kind: EventKind, levels: int) -> None:
    """A deep value where the schema wants a string: jsonschema's message would repr it."""
    event: dict[str, Any] = copy.deepcopy(schema(kind)["examples"][0])
    first = next(k for k, v in event.items() if isinstance(v, str))
    event[first] = orjson.loads(_nested(levels))
    with pytest.raises(SchemaViolation) as info:
        validate(kind, event)
    assert "nested deeper" in info.value.detail
    assert errors(kind, event) == [info.value.detail]


def test_stdlib_written_deep_json_is_refused_too() -> None:
    deep: Any = []
    for _ in range(600):
        deep = [deep]
    raw = json.dumps({**VALID, "extensions": {"x": deep}}).encode()
    with pytest.raises(InputRejected) as info:
        parse_study(raw)
    assert info.value.reason is Reason.SCHEMA_VIOLATION
