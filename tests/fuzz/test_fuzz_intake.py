"""Fuzzing intake: whatever bytes arrive on radiology.studies.v1, parse_study either returns a
valid study or raises InputRejected; no other exception can reach the router."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.synth.hostile import announcement
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate
from streams.rules.intake import parse_study

VALID = announcement("2.25.42", "file:///data/dicom/H1/1.dcm",
                     published_at="2024-03-01T12:00:00Z")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def _judge(raw: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
    try:
        study = parse_study(raw, headers=headers, max_bytes=64 * 1024)
    except InputRejected as exc:
        assert isinstance(exc.reason, Reason)
        assert len(exc.detail) < 1000
    else:
        validate(EventKind.STUDY_ANNOUNCED, study)


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
