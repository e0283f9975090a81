"""The intake gate's batch function (streams/agents/intake.py) on a list-backed sink: a
hospital's own announcements pass to the studies topic byte for byte, anything else is
dead-lettered with its reason, and the batch's outcomes are flushed before it returns."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.agents import intake as intake_module
from streams.agents.intake import IntakeGate
from streams.contract import topics
from streams.rules.origin import intake_topic
from streams.settings import Settings

from .agent_support import ListSink, Probe, announcement, event, study_uid

HOSPITAL = "H001"
INTAKE = intake_topic(HOSPITAL)


def intake_event(body: dict[str, Any] | bytes, offset: int = 0) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return event(INTAKE, raw, offset=offset)


def new_gate(probe: Probe) -> IntakeGate:
    return IntakeGate(Settings(intake_hospitals=(HOSPITAL,)), probe.metrics)


async def test_a_hospitals_own_study_is_forwarded_unchanged_and_flushed() -> None:
    uid = study_uid()
    raw = orjson.dumps(announcement(uid, hospital_id=HOSPITAL))
    sink = ListSink()
    await new_gate(Probe()).gate_batch([intake_event(raw)], sink)
    (forwarded,) = sink.sent
    assert (forwarded.topic, forwarded.key, forwarded.value) == (topics.STUDIES.name, uid, raw)
    assert sink.all_flushed


async def test_impersonation_and_bad_json_are_dead_lettered_with_their_reason() -> None:
    probe = Probe()
    sink = ListSink()
    await new_gate(probe).gate_batch(
        [intake_event(announcement(study_uid(), hospital_id="H002"), 0),
         intake_event(b"not json", 1)], sink)
    assert [(d["reason"], d["origin"]["offset"]) for d in sink.deadletters()] == [
        ("hospital_mismatch", 0), ("invalid_json", 1)]
    assert all(d["origin"]["topic"] == INTAKE for d in sink.deadletters())
    assert sink.on(topics.STUDIES) == []
    assert sink.all_flushed
    assert probe.value("radstream_deadletters_total", reason="hospital_mismatch") == 1


async def test_a_failure_after_validation_is_an_internal_error_and_the_batch_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def check_origin(topic: str, study: Any) -> None:
        raise RuntimeError("origin rule bug")

    monkeypatch.setattr(intake_module, "check_origin", check_origin)
    sink = ListSink()
    await new_gate(Probe()).gate_batch(
        [intake_event(announcement(study_uid(), hospital_id=HOSPITAL), i) for i in range(2)],
        sink)
    assert [(d["reason"], d["origin"]["offset"]) for d in sink.deadletters()] == [
        ("internal_error", 0), ("internal_error", 1)]
    assert sink.all_flushed
