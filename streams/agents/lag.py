"""Exports `radstream_consumer_lag_records{topic}` every few seconds from the Faust consumer.

Only topics of the contract (streams/contract/topics.py) are reported, so the label stays a
small fixed set; table changelogs, which Faust also assigns, are left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import faust

from streams.analytics.lag import PartitionOffsets, topic_lags
from streams.context import WorkerContext
from streams.contract import topics
from streams.metrics import Metrics

log = logging.getLogger(__name__)

#: Seconds between lag samples (Prometheus scrapes the last value).
LAG_INTERVAL_S = 2.0


@dataclass
class LagExporter:
    app: faust.App
    metrics: Metrics
    contract_topics: frozenset[str] = field(
        default_factory=lambda: frozenset(t.name for t in topics.all_topics()))
    #: Topics exported before: after a rebalance takes one away, its lag here drops to 0.
    exported: set[str] = field(default_factory=set)

    async def _offsets(self) -> list[PartitionOffsets]:
        consumer = self.app.consumer
        committed = self.app.monitor.tp_committed_offsets
        rows = []
        for tp in consumer.assignment():
            if tp.topic not in self.contract_topics:
                continue
            resume = committed.get(tp)
            if resume is None:  # nothing committed yet by this group: where it reads now
                resume = await consumer.position(tp)
            rows.append(PartitionOffsets(tp.topic, consumer.highwater(tp), resume))
        return rows

    async def export(self) -> None:
        try:
            lags = topic_lags(await self._offsets())
        except Exception as exc:  # consumer not started or mid-rebalance: try again next tick
            log.debug("consumer lag not available: %r", exc)
            return
        for topic in self.exported - lags.keys():
            self.metrics.consumer_lag.labels(topic=topic).set(0)
        for topic, behind in lags.items():
            self.metrics.consumer_lag.labels(topic=topic).set(behind)
        self.exported.update(lags)


def register(ctx: WorkerContext) -> LagExporter:
    exporter = LagExporter(ctx.app, ctx.metrics)
    ctx.app.timer(interval=LAG_INTERVAL_S)(exporter.export)
    return exporter
