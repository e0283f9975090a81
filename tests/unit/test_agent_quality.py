"""The quality agents' per-event functions (streams/agents/quality.py) on a list-backed sink:
a Finding the worker fails to take into account is dead-lettered with its origin, and the
agent goes on with the next one."""

from __future__ import annotations

from typing import Any

import orjson

from streams.agents.quality import Quality, thresholds
from streams.analytics.quality_monitor import QualityMonitor
from streams.contract import topics
from streams.contract.catalog import service
from streams.contract.events import finding_ok
from streams.rules.horizon import Horizon
from streams.settings import Settings

from .agent_support import ListSink, MemoryTable, Probe, announcement, event, study_uid

SPEC = service("chest-xray")


def finding_event(uid: str, offset: int) -> Any:
    width = max(f.output_index for f in SPEC.findings) + 1
    body = finding_ok(announcement(uid), SPEC, [0.9] * width, "2026-12-04T10:00:00Z")
    return event(topics.FINDINGS.name, orjson.dumps(body), offset=offset, key=uid.encode())


def new_quality(probe: Probe) -> Quality:
    return Quality(probe.metrics, QualityMonitor(thresholds(Settings())),
                   MemoryTable("quality-joins"), Horizon(3600.0, per_call=64))


async def test_a_finding_is_kept_for_its_reviews_without_an_outcome_of_its_own() -> None:
    quality = new_quality(Probe())
    sink = ListSink()
    uid = study_uid()
    await quality.take_finding(finding_event(uid, 0), sink)
    assert sink.sent == []
    assert f"{uid}|{SPEC.id}" in quality.joins  # type: ignore[operator]


async def test_a_finding_the_monitor_fails_on_is_dead_lettered_and_the_next_is_taken() -> None:
    probe = Probe()
    quality = new_quality(probe)
    failing, after = study_uid(), study_uid()
    add_finding = quality.monitor.add_finding
    calls: list[str] = []

    def first_call_fails(service: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(service)
        if len(calls) == 1:
            raise ZeroDivisionError("window bug")
        return add_finding(service, *args, **kwargs)

    quality.monitor.add_finding = first_call_fails  # type: ignore[method-assign]
    sink = ListSink()
    await quality.take_finding(finding_event(failing, 4), sink)
    await quality.take_finding(finding_event(after, 5), sink)
    (letter,) = sink.deadletters()
    assert letter["reason"] == "internal_error"
    assert letter["origin"] == {"topic": topics.FINDINGS.name, "partition": 0, "offset": 4}
    assert sink.all_flushed
    assert f"{after}|{SPEC.id}" in quality.joins  # type: ignore[operator]


async def test_a_record_that_is_no_finding_is_skipped_without_a_dead_letter() -> None:
    quality = new_quality(Probe())
    sink = ListSink()
    await quality.take_finding(event(topics.FINDINGS.name, b'{"service": "chest-xray"}'), sink)
    await quality.take_finding(event(topics.FINDINGS.name, b"{broken", offset=1), sink)
    assert sink.sent == []
    uid = study_uid()
    await quality.take_finding(finding_event(uid, 2), sink)  # and the agent goes on
    assert f"{uid}|{SPEC.id}" in quality.joins  # type: ignore[operator]
