"""The router's batch function (streams/agents/router.py) on a list-backed sink: where each
announcement goes, which ones are dead-lettered and why, and that a failure of the worker's own
ends as a dead letter instead of a stopped partition."""

from __future__ import annotations

from typing import Any

import faust
import orjson
import pytest

from streams.agents import router as router_module
from streams.agents.router import Router
from streams.contract import topics
from streams.contract.catalog import NOT_APPLICABLE_SERVICE
from streams.contract.topics import DEPLOYMENT_HEADER
from streams.rules.horizon import Horizon
from streams.settings import Settings

from .agent_support import ListSink, MemoryTable, Probe, announcement, event, study_uid

SETTINGS = Settings(app_id="radstream-unit")


def new_router(probe: Probe) -> Router:
    return Router(SETTINGS, probe.metrics, MemoryTable("study-fingerprints"),
                  Horizon(SETTINGS.dedup_horizon_s, per_call=64))


def studies_event(body: dict[str, object] | bytes, offset: int = 0,
                  partition: int = 0) -> faust.EventT:
    """A record as a hospital publishes it: keyed by its study UID."""
    if isinstance(body, bytes):
        return event(topics.STUDIES.name, body, partition=partition, offset=offset)
    return event(topics.STUDIES.name, orjson.dumps(body), partition=partition, offset=offset,
                 key=str(body["study_uid"]).encode())


async def test_a_chest_radiograph_becomes_one_work_item_carrying_the_announcement() -> None:
    probe = Probe()
    uid = study_uid()
    body = announcement(uid)
    sink = ListSink()
    await new_router(probe).route_events([studies_event(body)], sink)
    (item,) = sink.sent
    assert item.topic == topics.work_topic("chest-xray").name
    assert item.key == uid
    assert orjson.loads(item.value) == body  # type: ignore[arg-type]
    assert item.headers == [(DEPLOYMENT_HEADER, b"radstream-unit")]
    assert probe.value("radstream_work_items_total", service="chest-xray") == 1


async def test_an_emergency_takes_the_priority_lane() -> None:
    sink = ListSink()
    await new_router(Probe()).route_events(
        [studies_event(announcement(study_uid(), priority="emergency"))], sink)
    assert [s.topic for s in sink.sent] == [topics.work_topic("chest-xray", "priority").name]


async def test_a_study_no_service_reads_gets_a_not_applicable_finding() -> None:
    uid = study_uid()
    sink = ListSink()
    await new_router(Probe()).route_events(
        [studies_event(announcement(uid, modality="US", body_part="ABDOMEN"))], sink)
    (finding,) = sink.on(topics.FINDINGS)
    assert finding.key == uid
    assert finding.body["status"] == "not_applicable"
    assert finding.body["service"] == NOT_APPLICABLE_SERVICE
    assert len(sink.sent) == 1


async def test_bad_input_is_dead_lettered_with_its_reason_and_origin() -> None:
    probe = Probe()
    sink = ListSink()
    events = [studies_event(b"{not json", offset=7, partition=2),
              studies_event({"study_uid": study_uid()}, offset=8, partition=2)]
    await new_router(probe).route_events(events, sink)
    letters = sink.deadletters()
    assert [d["reason"] for d in letters] == ["invalid_json", "schema_violation"]
    assert [d["origin"] for d in letters] == [
        {"topic": topics.STUDIES.name, "partition": 2, "offset": 7},
        {"topic": topics.STUDIES.name, "partition": 2, "offset": 8}]
    assert probe.value("radstream_deadletters_total", reason="invalid_json") == 1
    assert probe.value("radstream_deadletters_total", reason="schema_violation") == 1


async def test_a_repeated_announcement_goes_through_and_a_contradicting_one_does_not() -> None:
    uid = study_uid()
    first = announcement(uid)
    contradicting = announcement(uid, hospital_id="H002")
    sink = ListSink()
    router = new_router(Probe())
    await router.route_events([studies_event(first, 0)], sink)
    # A redelivery of the same announcement (a crash before the ack) is routed again.
    await router.route_events([studies_event(first, 0), studies_event(contradicting, 1)], sink)
    work = sink.on(topics.work_topic("chest-xray"))
    assert len(work) == 2
    (letter,) = sink.deadletters()
    assert letter["reason"] == "duplicate_conflict"
    assert letter["origin"]["offset"] == 1


async def test_a_failure_of_the_worker_after_validation_is_an_internal_error_dead_letter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15, defect 1 (router): an exception after validation must not escape the batch
    (an unacknowledged batch fails again on every redelivery: a stopped partition)."""
    failing = study_uid()
    real_route = router_module.route

    def route(study: dict[str, Any], catalog: Any) -> Any:
        if study["study_uid"] == failing:
            raise RuntimeError("routing rule crashed")
        return real_route(study, catalog)

    monkeypatch.setattr(router_module, "route", route)
    probe = Probe()
    sink = ListSink()
    after = study_uid()
    await new_router(probe).route_events(
        [studies_event(announcement(failing), 3), studies_event(announcement(after), 4)], sink)
    (letter,) = sink.deadletters()
    assert letter["reason"] == "internal_error"
    assert letter["origin"] == {"topic": topics.STUDIES.name, "partition": 0, "offset": 3}
    assert letter["key"] == failing
    assert [s.key for s in sink.on(topics.work_topic("chest-xray"))] == [after]
    assert probe.value("radstream_deadletters_total", reason="internal_error") == 1
