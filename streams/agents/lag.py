"""Exports `radstream_consumer_lag_records{topic}` every few seconds from the Faust consumer.

Only topics of the contract (streams/contract/topics.py) are reported, so the label stays a small
fixed
set; table changelogs, which Faust also assigns, are left out.
"""

from __future__ import annotations

import logging

from streams.analytics.lag import PartitionOffsets, topic_lags
from streams.app import app, metrics
from streams.contract import topics

log = logging.getLogger(__name__)

#: Seconds between lag samples (Prometheus scrapes the last value).
LAG_INTERVAL_S = 2.0

_CONTRACT_TOPICS = frozenset(t.name for t in topics.all_topics())
#: Topics exported before: after a rebalance takes one away, its lag here drops to 0.
_exported: set[str] = set()


async def _offsets() -> list[PartitionOffsets]:
    consumer = app.consumer
    committed = app.monitor.tp_committed_offsets
    rows = []
    for tp in consumer.assignment():
        if tp.topic not in _CONTRACT_TOPICS:
            continue
        resume = committed.get(tp)
        if resume is None:  # nothing committed yet by this group: where it reads now
            resume = await consumer.position(tp)
        rows.append(PartitionOffsets(tp.topic, consumer.highwater(tp), resume))
    return rows


@app.timer(interval=LAG_INTERVAL_S)
async def export_consumer_lag() -> None:
    try:
        lags = topic_lags(await _offsets())
    except Exception as exc:  # consumer not started or mid-rebalance: try again next tick
        log.debug("consumer lag not available: %r", exc)
        return
    for topic in _exported - lags.keys():
        metrics.consumer_lag.labels(topic=topic).set(0)
    for topic, behind in lags.items():
        metrics.consumer_lag.labels(topic=topic).set(behind)
    _exported.update(lags)
