"""Aggregator agent: counts Findings per hospital and service in Faust tables and serves the
totals as JSON at GET /stats (the stats API)."""

from __future__ import annotations

import logging

import faust
import orjson

from streams.app import app, findings_topic
from streams.stats import cell_key, count_finding, empty_counts, finding_identity, rollup

log = logging.getLogger(__name__)

# Tables match their source topic's partition count (Faust requires it); keys and values are
# plain JSON (the app's default serializer).
counts = app.Table("stats-counts", default=empty_counts, partitions=findings_topic.partitions)
studies = app.Table("stats-studies", default=int, partitions=findings_topic.partitions)
#: Keys already counted: a redelivered or duplicated Finding must not count twice.
seen = app.Table("stats-seen", default=bool, partitions=findings_topic.partitions)


@app.agent(findings_topic, name="aggregate")
async def aggregate(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        try:
            finding = orjson.loads(event.message.value)
            identity = finding_identity(finding)
            if seen[identity]:
                continue
            partition = event.message.partition
            key = cell_key(partition, finding["hospital_id"], finding["service"])
            counts[key] = count_finding(counts[key], finding)
            study_key = f"study|{finding['study_uid']}"
            if not seen[study_key]:
                seen[study_key] = True
                hospital_key = f"{partition}|{finding['hospital_id']}"
                studies[hospital_key] += 1
            seen[identity] = True
        except Exception:  # findings are our own validated output; log and keep counting
            log.exception("aggregate: could not count a finding")


@app.page("/stats")
async def stats_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    body = rollup(counts.items(), studies.items())
    return web.bytes(orjson.dumps(body), content_type="application/json")
