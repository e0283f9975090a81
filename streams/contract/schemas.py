"""Validation of event bodies against the contract in schemas/ (JSON Schema 2020-12).

Pure: no Kafka here. The schema files are the single source of truth for the event shapes;
this module loads each once and validates with date-time format checking switched on (we check
RFC 3339 ourselves so that the result does not depend on which optional jsonschema format
packages happen to be installed).

Error messages name the JSON path and the rule that failed but never echo the offending value:
they end up in dead-letter events and logs, where patient data must not appear.

Speed: every study is validated several times on its way (announcement, Finding, Latency, and
again by the aggregators), and jsonschema's interpreter costs ~0.4 ms a time. Each schema is
therefore also compiled to Python code (fastjsonschema), about 17x faster. jsonschema stays
the reference: the compiled code only ever *accepts*; anything it refuses goes to jsonschema,
which either explains the error or, were the two to disagree, has the last word
(tests/unit/test_schemas_compiled.py checks they agree).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from streams.contract.cloudevents import parse_rfc3339
from streams.contract.reasons import InputRejected, Reason

#: The contract directory at the repository root.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

#: Longest error message handed out (dead-letter `detail`, logs).
MAX_MESSAGE = 200

#: Major version of every event schema; it is part of each file name.
SCHEMA_VERSION = "1"

#: Deepest nesting of objects and arrays in an event body (the body itself is level 1; the
#: contract's own fields need 3). orjson reads 1024 levels but writes only 254, and jsonschema's
#: messages repr the instance, which fails near 1000: a deeper body must be refused with a
#: reason before either is reached.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"$: objects and arrays nested deeper than {MAX_JSON_DEPTH} levels"


class EventKind(StrEnum):
    """One event of the contract; the value is the stem of its schema file."""

    STUDY_ANNOUNCED = "study-announced"
    FINDING = "finding"
    LATENCY = "latency"
    DEADLETTER = "deadletter"
    REVIEW = "review"
    STATS_SNAPSHOT = "stats-snapshot"
    QUALITY_ALERT = "quality-alert"

    @property
    def filename(self) -> str:
        return f"{self.value}.v{SCHEMA_VERSION}.json"

    @property
    def path(self) -> Path:
        return SCHEMA_DIR / self.filename


class SchemaViolation(InputRejected):
    """An event body that does not match its schema."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.SCHEMA_VIOLATION, detail)


def is_date_time(instance: object) -> bool:
    """The `date-time` format, the same function for both validators: exactly the timestamps
    the one timestamp reader (parse_rfc3339) reads, so nothing validated can fail to parse."""
    if not isinstance(instance, str):
        return True  # formats constrain strings only; `type` handles the rest
    try:
        parse_rfc3339(instance)
    except ValueError:
        return False
    return True


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (a loop, not
    recursion: the depth is the sender's to choose)."""
    if not isinstance(value, dict | list):
        return False
    if limit < 1:
        return True
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checks("date-time")(is_date_time)
    return checker


@cache
def schema(kind: EventKind) -> dict[str, Any]:
    """The parsed schema document of one event (loaded once)."""
    loaded = orjson.loads(EventKind(kind).path.read_bytes())
    if not isinstance(loaded, dict):
        raise TypeError(f"{EventKind(kind).filename}: a schema must be a JSON object")
    return loaded


@cache
def validator(kind: EventKind) -> Validator:
    """A ready 2020-12 validator for one event, date-time format checking included."""
    doc = schema(EventKind(kind))
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc, format_checker=_format_checker())


@cache
def compiled(kind: EventKind) -> Callable[[object], object]:
    """The schema of one event compiled to Python code: raises on an invalid instance."""
    return cast(Callable[[object], object],
                fastjsonschema.compile(schema(EventKind(kind)),
                                       formats={"date-time": is_date_time}))


def validate(kind: EventKind, obj: object) -> None:
    """Raise SchemaViolation with a short, value-free message if `obj` breaks the schema."""
    try:
        compiled(kind)(obj)
        return  # the common case: a valid event, accepted by the compiled schema
    except Exception:  # whatever it refuses, jsonschema judges and explains
        pass
    if nested_deeper_than(obj, MAX_JSON_DEPTH):  # before jsonschema walks and reprs it
        raise SchemaViolation(TOO_DEEP)
    v = validator(kind)
    # is_valid stops at the first failure, while best_match collects every error to rank them,
    # so run it only when there is something to explain.
    if v.is_valid(cast(Any, obj)):
        return
    error = best_match(v.iter_errors(cast(Any, obj)))
    if error is not None:
        raise SchemaViolation(_describe(error))


def errors(kind: EventKind, obj: object) -> list[str]:
    """Every violation, one short value-free message each, in document order."""
    if nested_deeper_than(obj, MAX_JSON_DEPTH):
        return [TOO_DEEP]
    found = sorted(validator(kind).iter_errors(cast(Any, obj)),
                   key=lambda e: [str(p) for p in e.path])
    return list(dict.fromkeys(_describe(e) for e in found))


_JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"), (type(None), "null"), ((int, float), "number"), (str, "string"),
    (list, "array"), (dict, "object"),
)


def _json_type(instance: object) -> str:
    for python_type, name in _JSON_TYPES:
        if isinstance(instance, python_type):
            return name
    return type(instance).__name__


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


_REQUIRED = re.compile(r"^'([^']*)' is a required property$")


def _rule(error: ValidationError) -> str:
    """What was expected, from the schema side only (never the instance's value)."""
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        # One error per missing name; the name comes from the schema, quoted in the message.
        named = _REQUIRED.match(error.message)
        return f"missing required property {_short(named.group(1) if named else expected)}"
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(cast(Mapping[str, Any], error.schema).get("properties", {}))
        extra = sorted(str(p) for p in error.instance if p not in allowed)
        return f"unknown property {_short(', '.join(extra))}"
    if rule == "type":
        return f"expected {_short(expected)}, got {_json_type(error.instance)}"
    if rule == "enum":
        return f"must be one of {_short(expected, 120)}"
    if rule == "const":
        return f"must be {_short(expected)}"
    if rule == "pattern":
        return f"does not match {_short(expected, 120)}"
    if rule == "format":
        return f"not a valid {expected}"
    if rule in ("minLength", "maxLength"):
        return f"length must be {'at least' if rule == 'minLength' else 'at most'} {expected}"
    if rule == "maxItems" and expected == 0:
        return "must be empty"
    if rule in ("minItems", "maxItems"):
        return f"must have {'at least' if rule == 'minItems' else 'at most'} {expected} items"
    if rule in ("minProperties", "maxProperties"):
        which = "at least" if rule == "minProperties" else "at most"
        return f"must have {which} {expected} properties"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                "exclusiveMaximum": "<"}[rule]
        return f"must be {sign} {expected}"
    if rule == "propertyNames":
        return "has a property name that is not allowed"
    if rule == "not" and isinstance(error.schema, dict) and "description" in error.schema:
        return str(error.schema["description"])
    if rule is None:  # a `false` subschema
        return "not allowed here"
    return f"violates {rule}"


def _describe(error: ValidationError) -> str:
    subject = "property name " if "propertyNames" in error.schema_path else ""
    message = f"{error.json_path}: {subject}{_rule(error)}"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
