"""Aggregators: Findings, Latency events and DeadLetters into windowed city statistics, exact
under crashes and redelivery (the design is in streams/analytics/exact_once.py); the stats HTTP
API (GET /stats, GET /stats/windows, GET /openapi.yaml) and snapshots on radiology.stats.v1.

Each source topic has one table, written by one agent with concurrency 1, so every write made
for an event goes to the changelog partition of that event's partition, in order.

The API and the snapshots cover the partitions this worker owns: run the aggregators on one
worker (the default) to see the whole city.

Seen entries are forgotten after RADSTREAM_DEDUP_HORIZON_S of event time
(streams/rules/horizon.py); the sweep runs in the agent, after a batch's writes, with the
batch's last event current.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import faust
import orjson

from streams.agents.outcomes import Outbox, Sink, reject, take_events
from streams.agents.table_writes import Table, current, forget_expired, write_stamped
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
from streams.context import WorkerContext
from streams.contract import topics
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.schemas import SCHEMA_DIR, EventKind, SchemaViolation, validate
from streams.metrics import Metrics
from streams.rules.horizon import Horizon

log = logging.getLogger(__name__)

#: Seconds between snapshot rounds on radiology.stats.v1 (only changed stats keys are sent).
SNAPSHOT_INTERVAL_S = 10.0
#: Every this many rounds, every stats key is compared with what was last sent (covers cells
#: rebuilt from the changelog after a restart, which no agent marks as changed).
FULL_ROUND_EVERY = 30
OPENAPI = SCHEMA_DIR / "stats-api.openapi.yaml"

Item = tuple[faust.EventT, dict[str, Any]]


@dataclass
class Tally:
    """One source topic counted into its table of stats cells."""

    kind: EventKind
    planner: Planner
    cells: Table
    horizon: Horizon
    metrics: Metrics
    #: Stats keys changed since the last snapshot round (shared with Snapshots).
    changed: set[str]

    async def count_batch(self, events: list[faust.EventT], sink: Sink) -> None:
        """Count a micro-batch: one coalesced plan per source partition
        (streams.analytics.exact_once.plan_batch), its writes made with the partition's last
        event current, so they reach its changelog partition, in order.

        A valid event the worker fails to count is dead-lettered (`internal_error`, with its
        origin) and the others are counted: the batch always ends, and is acknowledged only
        once those dead letters are on the bus.
        """
        by_partition: dict[int, list[Item]] = {}
        for event in events:
            msg = event.message
            try:
                body = orjson.loads(msg.value or b"")
                validate(self.kind, body)
            except (orjson.JSONDecodeError, SchemaViolation) as exc:
                # Not ours to dead-letter (these topics carry our own outputs): log and go on.
                log.warning("stats: skipped %s[%d]@%d: %s", msg.topic, msg.partition,
                            msg.offset, exc)
                continue
            by_partition.setdefault(msg.partition, []).append((event, body))
        for partition, items in by_partition.items():
            try:
                self._count(partition, items)
            except Exception:
                first, last = items[0][0].message, items[-1][0].message
                log.exception("stats: could not count %s[%d]@%d..%d; counting them one by one",
                              first.topic, partition, first.offset, last.offset)
                await self._count_each(partition, items, sink)
            forget_expired(self.cells, self.horizon, items[-1][0])
        await sink.flush()

    def _count(self, partition: int, items: list[Item]) -> None:
        last = items[-1][0]
        plan = plan_batch(self.cells.get, self.planner,
                          [(partition, e.message.offset, body) for e, body in items],
                          timestamp=last.message.timestamp)
        with current(last):
            for key, value in plan.writes:
                write_stamped(self.cells, self.horizon, key, value)
        self.changed.update(plan.touched)

    async def _count_each(self, partition: int, items: list[Item], sink: Sink) -> None:
        """Count what can be counted after a batch plan failed. Planning against what a failed
        attempt may have written is safe: cells and seen entries make a replayed event count
        once (exact_once.py), as after a crash."""
        for event, body in items:
            try:
                self._count(partition, [(event, body)])
            except Exception as exc:
                if event.message.topic == topics.DEADLETTER.name:
                    # A dead letter about a dead letter would be counted by this very agent.
                    log.exception("stats: dead letter %s[%d]@%d not counted",
                                  event.message.topic, partition, event.message.offset)
                else:
                    await reject(sink, self.metrics.deadletters, event, exc)


@dataclass
class Snapshots:
    """StatsSnapshots on radiology.stats.v1: only keys whose numbers changed since last sent."""

    counts: list[Table]
    latency: Table
    topic: faust.TopicT
    #: Stats keys changed since the last snapshot round.
    changed: set[str] = field(default_factory=set)
    #: Stats key -> digest of the last snapshot sent (without its produced_at).
    sent: dict[str, bytes] = field(default_factory=dict)
    rounds: int = 0

    def count_cells(self) -> Iterable[tuple[str, Any]]:
        return chain.from_iterable(t.items() for t in self.counts)

    async def publish(self) -> None:
        full = self.rounds % FULL_ROUND_EVERY == 0
        self.rounds += 1
        wanted = set(self.changed)
        self.changed.clear()
        aggs = aggregate(self.count_cells(), self.latency.items(),
                         want=(lambda k: True) if full else wanted.__contains__)
        produced_at = utc_now_rfc3339()
        pending = []
        for key, agg in sorted(aggs.items()):
            body = snapshot(StatsKey.parse(key), agg, produced_at)
            digest = hashlib.blake2b(orjson.dumps({**body, "produced_at": ""}),
                                     digest_size=16).digest()
            if self.sent.get(key) == digest:
                continue
            validate(EventKind.STATS_SNAPSHOT, body)  # our output must match the contract
            pending.append((key, digest, await self.topic.send(
                key=key.encode(), value=orjson.dumps(body), force=True,
                headers=ce_headers(topics.STATS.event_type, "radstream/aggregate"))))
        for key, digest, fut in pending:
            try:
                await fut
                self.sent[key] = digest
            except Exception:  # the next round sends it again (the key is not marked as sent)
                log.exception("stats: snapshot %s not delivered", key)
                self.changed.add(key)
        if pending:
            log.info("stats: sent %d snapshot(s) to %s", len(pending), topics.STATS.name)


def _json(web: faust.web.View, body: object, status: int = 200) -> faust.web.Response:
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


def register(ctx: WorkerContext) -> Snapshots:
    """The three aggregators, the snapshot timer and the stats API's pages."""
    app, settings = ctx.app, ctx.settings
    # Keys are strings, values plain JSON (the app's default serializer). Partition counts
    # match the source topics, as Faust requires.
    sources = [(topics.FINDINGS, "stats-findings", "aggregate", EventKind.FINDING,
                plan_finding),
               (topics.LATENCY, "stats-latency", "aggregate-latency", EventKind.LATENCY,
                plan_latency),
               (topics.DEADLETTER, "stats-deadletters", "aggregate-deadletters",
                EventKind.DEADLETTER, plan_deadletter)]
    tables = {spec.name: app.Table(table, partitions=spec.partitions)
              for spec, table, _, _, _ in sources}
    finding_cells, latency_cells, deadletter_cells = tables.values()
    snapshots = Snapshots([finding_cells, deadletter_cells], latency_cells,
                          ctx.topic(topics.STATS))
    for spec, _, agent, kind, planner in sources:
        tally = Tally(kind, planner, tables[spec.name],
                      # Event time per source partition, for forgetting its seen entries.
                      Horizon(settings.dedup_horizon_s,
                              per_call=settings.forget_per_call(settings.stats_batch_max)),
                      ctx.metrics, snapshots.changed)
        _register_tally(ctx, ctx.topic(spec), agent, tally)

    app.timer(interval=SNAPSHOT_INTERVAL_S)(snapshots.publish)

    async def stats_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return _json(web, totals(finding_cells.items(), deadletter_cells.items()))

    async def stats_windows_view(web: faust.web.View,
                                 request: faust.web.Request) -> faust.web.Response:
        try:
            query = WindowQuery.parse(dict(request.query))
        except QueryError as exc:
            return _json(web, {"error": "bad_request", "parameter": exc.parameter,
                               "detail": exc.detail}, status=400)
        return _json(web, window_rows(query, snapshots.count_cells(), latency_cells.items()))

    async def openapi_view(web: faust.web.View,
                           request: faust.web.Request) -> faust.web.Response:
        return web.bytes(OPENAPI.read_bytes(), content_type="application/yaml")

    app.page("/stats")(stats_view)
    app.page("/stats/windows")(stats_windows_view)
    app.page("/openapi.yaml")(openapi_view)
    return snapshots


def _register_tally(ctx: WorkerContext, topic: faust.TopicT, name: str, tally: Tally) -> None:
    settings = ctx.settings

    async def count(stream: faust.StreamT[bytes]) -> None:
        async for events in take_events(stream, settings.stats_batch_max,
                                        settings.stats_batch_within_s):
            await tally.count_batch(events, Outbox("radstream/aggregate", ctx.topics))

    ctx.app.agent(topic, name=name)(count)
