"""The aggregators' batch function (streams/agents/aggregate.py) on in-memory tables and a
list-backed sink: the counts GET /stats shows are exact when a batch is redelivered, records
that are not contract events are skipped, and an event the worker fails to count is
dead-lettered with its origin while the rest of the batch is counted."""

from __future__ import annotations

from typing import Any

import orjson

from streams.agents.aggregate import Tally
from streams.analytics.exact_once import Plan, Planner, plan_deadletter, plan_finding
from streams.analytics.rollups import totals
from streams.contract import topics
from streams.contract.catalog import service
from streams.contract.events import deadletter, finding_ok
from streams.contract.reasons import Reason
from streams.contract.schemas import EventKind
from streams.rules.horizon import Horizon

from .agent_support import ListSink, MemoryTable, Probe, announcement, event, study_uid

SPEC = service("chest-xray")
AT = "2026-12-04T10:00:00Z"


def new_tally(probe: Probe, kind: EventKind = EventKind.FINDING,
              planner: Planner = plan_finding, name: str = "stats-findings") -> Tally:
    return Tally(kind, planner, MemoryTable(name), Horizon(24 * 3600.0, per_call=64),
                 probe.metrics, set())


def finding_event(uid: str, offset: int, partition: int = 0) -> Any:
    width = max(f.output_index for f in SPEC.findings) + 1
    body = finding_ok(announcement(uid), SPEC, [0.9] * width, AT)
    return event(topics.FINDINGS.name, orjson.dumps(body), partition=partition, offset=offset,
                 key=uid.encode())


def city(tally: Tally) -> dict[str, int]:
    return dict(totals(tally.cells.items())["city"])


async def test_a_redelivered_batch_counts_each_study_once() -> None:
    tally = new_tally(Probe())
    batch = [finding_event(study_uid(), offset=i, partition=i % 2) for i in range(6)]
    await tally.count_batch(batch, ListSink())
    first = city(tally)
    assert first["studies"] == 6 and first["findings"] == 6 and first["ok"] == 6
    # A crash before the ack: the same records again, alone and within a wider batch.
    await tally.count_batch(batch, ListSink())
    await tally.count_batch([*batch[3:], finding_event(study_uid(), offset=9)], ListSink())
    again = city(tally)
    assert again["studies"] == 7 and again["findings"] == 7
    assert totals(tally.cells.items())["hospitals"]["H001"]["studies"] == 7
    assert tally.changed  # the snapshot round learns which stats keys moved


async def test_records_that_are_no_finding_are_skipped_not_dead_lettered() -> None:
    tally = new_tally(Probe())
    sink = ListSink()
    await tally.count_batch([event(topics.FINDINGS.name, b"{broken", offset=0),
                             event(topics.FINDINGS.name, b'{"study_uid": "x"}', offset=1),
                             finding_event(study_uid(), offset=2)], sink)
    assert city(tally)["studies"] == 1
    assert sink.sent == []


async def test_an_event_the_worker_fails_to_count_is_dead_lettered_and_the_rest_counted(
) -> None:
    """Issue 15, defect 1 (aggregate): a failure after validation ends as an internal_error
    dead letter with its origin; the batch ends and its other events are counted once."""
    failing = study_uid()

    def planner(get: Any, partition: int, offset: int, finding: Any) -> Plan:
        if finding["study_uid"] == failing:
            raise KeyError("counting rule bug")
        return plan_finding(get, partition, offset, finding)

    probe = Probe()
    tally = new_tally(probe, planner=planner)
    sink = ListSink()
    batch = [finding_event(study_uid(), 0), finding_event(failing, 1),
             finding_event(study_uid(), 2)]
    await tally.count_batch(batch, sink)
    assert city(tally)["studies"] == 2
    (letter,) = sink.deadletters()
    assert letter["reason"] == "internal_error"
    assert letter["origin"] == {"topic": topics.FINDINGS.name, "partition": 0, "offset": 1}
    assert letter["key"] == failing
    assert sink.all_flushed
    assert probe.value("radstream_deadletters_total", reason="internal_error") == 1
    # Redelivered: still two studies, and the failing one is dead-lettered again (its dead
    # letters are counted once by origin).
    await tally.count_batch(batch, sink)
    assert city(tally)["studies"] == 2


async def test_a_dead_letter_that_cannot_be_counted_is_not_dead_lettered_again() -> None:
    def planner(get: Any, partition: int, offset: int, record: Any) -> Plan:
        raise RuntimeError("counting rule bug")

    tally = new_tally(Probe(), EventKind.DEADLETTER, planner, "stats-deadletters")
    record = deadletter(Reason.INVALID_JSON, "not JSON", topic=topics.STUDIES.name,
                        partition=0, offset=5, key=b"k", payload=b"{", produced_at=AT)
    sink = ListSink()
    await tally.count_batch([event(topics.DEADLETTER.name, orjson.dumps(record))], sink)
    assert sink.sent == []  # it would come back to this very agent


async def test_dead_letters_count_once_per_origin() -> None:
    tally = new_tally(Probe(), EventKind.DEADLETTER, plan_deadletter, "stats-deadletters")
    record = deadletter(Reason.INVALID_JSON, "not JSON", topic=topics.STUDIES.name,
                        partition=1, offset=5, key=b"k", payload=b"{", produced_at=AT)
    batch = [event(topics.DEADLETTER.name, orjson.dumps(record), offset=i) for i in range(2)]
    await tally.count_batch(batch, ListSink())
    assert totals((), tally.cells.items())["city"]["deadletters"] == 1
