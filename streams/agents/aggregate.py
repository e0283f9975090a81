"""Aggregators: Findings, Latency events and DeadLetters into windowed city statistics, exact
under crashes and redelivery (the design is in streams/analytics/stats.py); the stats HTTP API
(GET /stats, GET /stats/windows, GET /openapi.yaml) and snapshots on radiology.stats.v1.

Each source topic has one table, written by one agent with concurrency 1, so every write made
for an event goes to the changelog partition of that event's partition, in order.

The API and the snapshots cover the partitions this worker owns: run the aggregators on one
worker (the default) to see the whole city.

Seen entries are forgotten after RADSTREAM_DEDUP_HORIZON_S of event time (streams/rules/horizon.py);
the sweep runs in the agent, after a batch's writes, with the batch's last event current.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from itertools import chain
from typing import Any

import faust
import orjson
from faust.types import TableT

from streams.agents.outcomes import take_events
from streams.agents.table_writes import current, forget_expired, write_stamped
from streams.analytics.exact_once import (
    Planner,
    plan_batch,
    plan_deadletter,
    plan_finding,
    plan_latency,
)
from streams.analytics.rollups import aggregate, snapshot, totals
from streams.analytics.stats_keys import StatsKey
from streams.analytics.window_query import QueryError, WindowQuery, window_rows
from streams.app import (
    app,
    deadletter_topic,
    findings_topic,
    latency_topic,
    raw_topic,
    settings,
)
from streams.contract import topics
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.schemas import SCHEMA_DIR, EventKind, SchemaViolation, validate
from streams.rules.horizon import Horizon

log = logging.getLogger(__name__)

#: Seconds between snapshot rounds on radiology.stats.v1 (only changed stats keys are sent).
SNAPSHOT_INTERVAL_S = 10.0
#: Every this many rounds, every stats key is compared with what was last sent (covers cells
#: rebuilt from the changelog after a restart, which no agent marks as changed).
FULL_ROUND_EVERY = 30
OPENAPI = SCHEMA_DIR / "stats-api.openapi.yaml"

# Keys are strings, values plain JSON (the app's default serializer). Partition counts match the
# source topics, as Faust requires.
finding_cells = app.Table("stats-findings", partitions=findings_topic.partitions)
latency_cells = app.Table("stats-latency", partitions=latency_topic.partitions)
deadletter_cells = app.Table("stats-deadletters", partitions=deadletter_topic.partitions)
stats_topic = raw_topic(topics.STATS)
#: Event time per source partition of each table, for forgetting its seen entries.
horizons = {table.name: Horizon(settings.dedup_horizon_s,
                                 per_call=settings.forget_per_call(settings.stats_batch_max))
            for table in (finding_cells, latency_cells, deadletter_cells)}

#: Stats keys changed since the last snapshot round.
_dirty: set[str] = set()
#: Stats key → digest of the last snapshot sent (without its produced_at).
_sent: dict[str, bytes] = {}
_rounds = 0

async def _aggregate(stream: faust.StreamT[bytes], table: TableT, kind: EventKind,
                     planner: Planner) -> None:
    async for events in take_events(stream, settings.stats_batch_max,
                                    settings.stats_batch_within_s):
        count_batch(events, table, kind, planner)


def count_batch(events: list[faust.EventT], table: TableT, kind: EventKind,
                planner: Planner) -> None:
    """Count a micro-batch: one coalesced plan per source partition
    (streams.analytics.stats.plan_batch),
    its writes made with the partition's last event current, so they reach its changelog
    partition, in order."""
    by_partition: dict[int, list[tuple[faust.EventT, dict[str, Any]]]] = {}
    for event in events:
        msg = event.message
        try:
            body = orjson.loads(msg.value or b"")
            validate(kind, body)
        except (orjson.JSONDecodeError, SchemaViolation) as exc:
            # Not ours to dead-letter (these topics carry our own outputs): log and go on.
            log.warning("stats: skipped %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset,
                        exc)
            continue
        by_partition.setdefault(msg.partition, []).append((event, body))
    horizon = horizons[table.name]
    for partition, items in by_partition.items():
        last = items[-1][0]
        try:
            plan = plan_batch(table.get, planner,
                              [(partition, e.message.offset, body) for e, body in items],
                              timestamp=last.message.timestamp)
            with current(last):
                for key, value in plan.writes:
                    write_stamped(table, horizon, key, value)
            forget_expired(table, horizon, last)
            _dirty.update(plan.touched)
        except Exception:  # a bug must not stop the counting of everything else
            first = items[0][0].message
            log.exception("stats: could not count %s[%d]@%d..%d", first.topic, partition,
                          first.offset, last.message.offset)


@app.agent(findings_topic, name="aggregate")
async def aggregate_findings(stream: faust.StreamT[bytes]) -> None:
    await _aggregate(stream, finding_cells, EventKind.FINDING, plan_finding)


@app.agent(latency_topic, name="aggregate-latency")
async def aggregate_latency(stream: faust.StreamT[bytes]) -> None:
    await _aggregate(stream, latency_cells, EventKind.LATENCY, plan_latency)


@app.agent(deadletter_topic, name="aggregate-deadletters")
async def aggregate_deadletters(stream: faust.StreamT[bytes]) -> None:
    await _aggregate(stream, deadletter_cells, EventKind.DEADLETTER, plan_deadletter)


def _count_cells() -> Iterable[tuple[str, Any]]:
    return chain(finding_cells.items(), deadletter_cells.items())


@app.timer(interval=SNAPSHOT_INTERVAL_S)
async def publish_snapshots() -> None:
    """Send a StatsSnapshot for every stats key whose numbers changed since it was last sent."""
    global _rounds
    full = _rounds % FULL_ROUND_EVERY == 0
    _rounds += 1
    wanted = set(_dirty)
    _dirty.clear()
    aggs = aggregate(_count_cells(), latency_cells.items(),
                     want=(lambda k: True) if full else wanted.__contains__)
    produced_at = utc_now_rfc3339()
    pending = []
    for key, agg in sorted(aggs.items()):
        body = snapshot(StatsKey.parse(key), agg, produced_at)
        digest = hashlib.blake2b(orjson.dumps({**body, "produced_at": ""}),
                                 digest_size=16).digest()
        if _sent.get(key) == digest:
            continue
        validate(EventKind.STATS_SNAPSHOT, body)  # our output must match the contract
        pending.append((key, digest, await stats_topic.send(
            key=key.encode(), value=orjson.dumps(body), force=True,
            headers=ce_headers(topics.STATS.event_type, "radstream/aggregate"))))
    for key, digest, fut in pending:
        try:
            await fut
            _sent[key] = digest
        except Exception:  # the next round sends it again (the key is not marked as sent)
            log.exception("stats: snapshot %s not delivered", key)
            _dirty.add(key)
    if pending:
        log.info("stats: sent %d snapshot(s) to %s", len(pending), topics.STATS.name)


def _json(web: faust.web.View, body: object, status: int = 200) -> faust.web.Response:
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


@app.page("/stats")
async def stats_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    return _json(web, totals(finding_cells.items(), deadletter_cells.items()))


@app.page("/stats/windows")
async def stats_windows_view(web: faust.web.View,
                             request: faust.web.Request) -> faust.web.Response:
    try:
        query = WindowQuery.parse(dict(request.query))
    except QueryError as exc:
        return _json(web, {"error": "bad_request", "parameter": exc.parameter,
                           "detail": exc.detail}, status=400)
    return _json(web, window_rows(query, _count_cells(), latency_cells.items()))


@app.page("/openapi.yaml")
async def openapi_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    return web.bytes(OPENAPI.read_bytes(), content_type="application/yaml")
