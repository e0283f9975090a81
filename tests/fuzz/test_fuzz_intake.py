"""Fuzzing intake: whatever bytes arrive on radiology.studies.v1, parse_study either returns a
valid study or raises InputRejected; no other exception can reach the router. And every study it
accepts can be used the way the worker uses it: fingerprinted (the same for the same content),
written again as a work item, and its timestamps read (latency) and windowed (statistics)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.synth.hostile import announcement
from streams.analytics.windows import labels
from streams.contract.cloudevents import parse_rfc3339
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate
from streams.rules.intake import VOLATILE_FIELDS, parse_study, study_fingerprint
from tests.fuzz.strategies import timestamp_texts

VALID = announcement("2.25.42", "file:///data/dicom/H1/1.dcm",
                     published_at="2024-03-01T12:00:00Z")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def _reordered(value: Any) -> Any:
    """The same JSON content with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def _usable(study: dict[str, Any]) -> None:
    """What the router and the inference agent do with an accepted study must not raise."""
    fingerprint = study_fingerprint(study)
    assert study_fingerprint(_reordered(study)) == fingerprint
    for field in VOLATILE_FIELDS:
        assert study_fingerprint({**study, field: "2000-01-01T00:00:00Z"}) == fingerprint
    assert orjson.loads(orjson.dumps(study)) == study  # forwarded as a work item
    for field in ("acquired_at", "published_at"):
        at = parse_rfc3339(study[field])
        at.timestamp()
        labels(at)


def _judge(raw: bytes, headers: list[tuple[str, bytes]] | None = None) -> dict[str, Any] | None:
    try:
        study = parse_study(raw, headers=headers, max_bytes=64 * 1024)
    except InputRejected as exc:
        assert isinstance(exc.reason, Reason)
        assert len(exc.detail) < 1000
        return None
    validate(EventKind.STUDY_ANNOUNCED, study)
    _usable(study)
    return study


@settings(settings.get_profile("radstream-fuzz"))
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    _judge(raw)


@settings(settings.get_profile("radstream-fuzz"))
@given(st.lists(st.sampled_from(sorted(VALID)), unique=True, max_size=4),
       st.dictionaries(st.sampled_from([*sorted(VALID), "extensions", "schema_version", "x"]),
                       json_values, max_size=4))
def test_mutated_valid_event(dropped: list[str], replaced: dict[str, object]) -> None:
    body = {k: v for k, v in VALID.items() if k not in dropped} | replaced
    _judge(json.dumps(body).encode())  # the stdlib writes integers orjson cannot


@settings(settings.get_profile("radstream-fuzz"))
@given(st.binary(min_size=1, max_size=64), st.integers(0, 400), st.text(max_size=40))
def test_spliced_bytes_and_headers(junk: bytes, at: int, ce_type: str) -> None:
    raw = orjson.dumps(VALID)
    _judge(raw[:at] + junk + raw[at:], [("ce_type", ce_type.encode("utf-8", "replace"))])


#: Timestamps shaped like RFC 3339 (each field a little beyond its range), and any text.
timestamps = timestamp_texts | st.text(max_size=40)


@settings(settings.get_profile("radstream-fuzz"))
@given(timestamps, timestamps)
def test_timestamps(acquired_at: str, published_at: str) -> None:
    """A timestamp the schema accepts is one every reader reads (a lower-case `z` once passed
    validation and then made the inference agent raise after it had sent the Findings)."""
    body = {**VALID, "acquired_at": acquired_at, "published_at": published_at}
    study = _judge(orjson.dumps(body))
    valid = True
    for text in (acquired_at, published_at):
        try:
            parse_rfc3339(text)
        except ValueError:
            valid = False
    assert (study is not None) is (valid and max(map(len, (acquired_at, published_at))) <= 40)


def _nest(levels: int, leaf: bytes, kinds: list[bool]) -> bytes:
    """`levels` arrays or one-key objects inside one another around `leaf`, as JSON text."""
    opening = b"".join(b"[" if k else b'{"k":' for k in kinds[:levels])
    closing = b"".join(b"]" if k else b"}" for k in reversed(kinds[:levels]))
    return opening + leaf + closing


@settings(settings.get_profile("radstream-fuzz"))
@given(st.integers(0, 1100), st.lists(st.booleans(), min_size=1100, max_size=1100),
       st.sampled_from(["extensions", "study_description", "series", "study_uid", "x"]))
def test_deep_nesting(levels: int, kinds: list[bool], field: str) -> None:
    """Nesting orjson reads but cannot write back (254+) or jsonschema cannot explain (about
    1000) ends with a reason, never an internal error; what is accepted stays usable."""
    inner = _nest(levels, b"0", kinds)
    value = b'{"site.x":' + inner + b"}" if field == "extensions" else inner
    slot = f'"{field}":'.encode()
    raw = orjson.dumps({**VALID, field: 0}).replace(slot + b"0", slot + value)
    study = _judge(raw)
    if study is not None:
        assert field == "extensions" and levels <= 30


@settings(settings.get_profile("radstream-fuzz"))
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), json_values,
                       min_size=1, max_size=6), st.text(max_size=30))
def test_fingerprint_is_content(extensions: dict[str, object], description: str) -> None:
    """Equal for equal content whatever the key order and published_at; a changed field is a
    different fingerprint (else a contradicting re-announcement would pass as a repeat)."""
    study = _judge(json.dumps({**VALID, "extensions": extensions}).encode())
    if study is None:
        return
    changed = {**study, "study_description": description + "!"}
    assert study_fingerprint(changed) != study_fingerprint(study)
    added = {**study["extensions"], "not a drawn key": 1}
    assert study_fingerprint({**study, "extensions": added}) != study_fingerprint(study)
