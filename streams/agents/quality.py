"""Quality monitor agents: join radiologist reviews with the AI's Finding scores, keep the
sliding windows, raise QualityAlerts on radiology.alerts.v1 and serve GET /quality.

Findings and reviews are both keyed by study_uid on topics with the same partition count, so a
table keyed "study_uid|service" is co-partitioned with both: each agent reads and writes the
entry of its own event's partition. A review that arrives before its Finding waits in that
entry until the Finding comes. The joins table is changelog-backed; the windows and alert
latches (streams/analytics/quality_monitor.py) live in this worker's memory and cover the
partitions it owns, like the stats API (one worker, the default, sees the whole city).

A join entry is forgotten RADSTREAM_REVIEW_HORIZON_S of event time after its last write
(streams/rules/horizon.py): a review arriving later no longer finds its Finding and waits in
turn; a review that waited that long for a Finding is counted in
radstream_quality_reviews_unmatched_total.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from streams.agents.outcomes import Outbox, Sink, reject
from streams.agents.table_writes import Table, forget_expired, write_stamped
from streams.analytics.quality_monitor import QualityMonitor, QualityThresholds
from streams.analytics.review_join import (
    Joined,
    join_key,
    parse_review,
    record_finding,
    record_review,
)
from streams.analytics.review_windows import Subject
from streams.context import WorkerContext
from streams.contract import catalog, topics
from streams.contract.catalog import ServiceSpec
from streams.contract.cloudevents import utc_now_rfc3339
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, SchemaViolation, validate
from streams.metrics import Metrics
from streams.rules.horizon import Horizon, stamp
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Alerts GET /quality lists, newest first.
RECENT_ALERTS = 50


def thresholds(settings: Settings) -> QualityThresholds:
    return QualityThresholds(
        auc_floor=settings.quality_auc_floor,
        auc_z=settings.quality_auc_z,
        min_reviews=settings.quality_min_reviews,
        window=settings.quality_window,
        device_window=settings.quality_device_window,
        defect_ceiling=settings.quality_defect_ceiling,
        defect_window=settings.quality_defect_window,
        defect_min_findings=settings.quality_defect_min_findings,
        rearm_margin=settings.quality_rearm_margin,
    )


def _is_finding(raw: bytes | None) -> bool:
    try:
        validate(EventKind.FINDING, orjson.loads(raw or b""))
    except (orjson.JSONDecodeError, SchemaViolation):
        return False
    return True


def _catalogued() -> dict[str, ServiceSpec]:
    return {s.id: s for s in catalog.catalog()}


@dataclass
class Quality:
    """The join of reviews with Findings and the monitor it feeds, for both quality agents."""

    metrics: Metrics
    monitor: QualityMonitor
    #: "study_uid|service" -> join entry, co-partitioned with findings and reviews.
    joins: Table
    #: Event time per partition, shared by both agents: they write the same partitions.
    horizon: Horizon
    #: Every catalogued service is monitored, whichever inference agents this worker runs.
    services: dict[str, ServiceSpec] = field(default_factory=_catalogued)
    recent_alerts: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=RECENT_ALERTS))

    def _write(self, event: faust.EventT, key: str, entry: dict[str, Any]) -> None:
        write_stamped(self.joins, self.horizon, key,
                      stamp(entry, event.message.partition, event.message.timestamp))

    def _forget(self, event: faust.EventT) -> None:
        for key, entry in forget_expired(self.joins, self.horizon, event):
            if entry.get("pending"):
                service = str(key).rsplit("|", 1)[-1]
                self.metrics.quality_reviews_unmatched.labels(service=service).inc(
                    len(entry["pending"]))

    async def _publish(self, sink: Sink, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            await sink.send(topics.ALERTS.name, alert["service"], alert)
            self.metrics.quality_alerts.labels(service=alert["service"],
                                               kind=alert["kind"]).inc()
            self.recent_alerts.appendleft(alert)
            log.warning("quality alert %s: service %s finding %s device %s: %.3f vs %.3f",
                        alert["kind"], alert["service"], alert.get("finding"),
                        alert.get("device_id"), alert["value"], alert["threshold"])

    def _observe(self, joined: list[Joined], now: str) -> list[dict[str, Any]]:
        metrics, alerts = self.metrics, []
        for j in joined:
            alerts += self.monitor.add_review(j.subject, j.observation, now=now)
            service, finding = j.subject.service, j.subject.finding or ""
            metrics.quality_reviews.labels(service=service, finding=finding).inc()
            s = self.monitor.summary(Subject(service, finding))
            for gauge, value in ((metrics.quality_auc, s.auc),
                                 (metrics.quality_sensitivity, s.sensitivity),
                                 (metrics.quality_specificity, s.specificity)):
                if value is not None:
                    gauge.labels(service=service, finding=finding).set(value)
        return alerts

    async def take_finding(self, event: faust.EventT, sink: Sink) -> None:
        """Store a Finding's scores for its reviews, count it towards the defect rate, and
        send the alerts that raises; return once they are on the bus."""
        self._forget(event)
        msg = event.message
        try:
            await self._monitor_finding(event, orjson.loads(msg.value or b""), sink)
        except Exception as exc:
            # Only a failure on a valid Finding is ours to report; the body is checked against
            # the contract here, off the hot path (this topic carries our own outputs).
            if _is_finding(msg.value):
                await reject(sink, self.metrics.deadletters, event, exc)
            else:
                log.warning("quality: skipped %s[%d]@%d: not a Finding", msg.topic,
                            msg.partition, msg.offset)
        await sink.flush()

    async def _monitor_finding(self, event: faust.EventT, finding: dict[str, Any],
                               sink: Sink) -> None:
        service = finding["service"]
        if service not in self.services or finding["status"] not in ("ok", "technical_defect"):
            return
        key = join_key(finding["study_uid"], service)
        entry, joined, new = record_finding(self.joins.get(key), finding)
        if not new:
            return
        self._write(event, key, entry)
        now = utc_now_rfc3339()
        alerts = self.monitor.add_finding(service, finding.get("device_id"),
                                          defective=finding["status"] == "technical_defect",
                                          at=finding["produced_at"], now=now,
                                          model=finding["model"])
        rate = self.monitor.defect_rate(service)
        if rate is not None:
            self.metrics.technical_defect_ratio.labels(service=service).set(rate)
        await self._publish(sink, alerts + self._observe(joined, now))

    async def take_review(self, event: faust.EventT, sink: Sink) -> None:
        """Join a radiologist's review with its Finding (or keep it until the Finding comes);
        a review that cannot be taken is dead-lettered with its reason."""
        self._forget(event)
        try:
            review = parse_review(event.message.value)
            if review["service"] not in self.services:
                raise InputRejected(Reason.SCHEMA_VIOLATION,
                                    "$.service: not an AI service of the catalogue")
            key = join_key(review["study_uid"], review["service"])
            entry, joined = record_review(self.joins.get(key), review)
            self._write(event, key, entry)
            await self._publish(sink, self._observe(joined, utc_now_rfc3339()))
        except Exception as exc:  # never lose a review silently: dead-letter it with the cause
            await reject(sink, self.metrics.deadletters, event, exc)
        await sink.flush()

    def report(self) -> dict[str, Any]:
        """The body of GET /quality."""
        monitored = []
        for spec in self.services.values():
            try:
                monitored += [(spec.id, f.code, f.threshold) for f in spec.findings]
            except catalog.CatalogError as exc:  # a model without a card: report the others
                log.warning("quality: %s not monitored: %s", spec.id, exc)
        return self.monitor.report(monitored, list(self.recent_alerts))


def register(ctx: WorkerContext) -> Quality:
    """Both quality agents, their join table and GET /quality."""
    settings, app = ctx.settings, ctx.app
    reviews = ctx.topic(topics.REVIEWS)
    quality = Quality(
        ctx.metrics, QualityMonitor(thresholds(settings)),
        app.Table("quality-joins", default=None, partitions=reviews.partitions),
        Horizon(settings.review_horizon_s,
                per_call=settings.forget_per_call(settings.batch_max)))

    async def quality_findings(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox("radstream/quality", ctx.topics)
        async for event in stream.events():
            await quality.take_finding(event, outbox)

    async def quality_reviews(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox("radstream/quality", ctx.topics)
        async for event in stream.events():
            await quality.take_review(event, outbox)

    async def quality_view(web: faust.web.View,
                           request: faust.web.Request) -> faust.web.Response:
        return web.bytes(orjson.dumps(quality.report()), content_type="application/json")

    app.agent(ctx.topic(topics.FINDINGS), name="quality-findings")(quality_findings)
    app.agent(reviews, name="quality-reviews")(quality_reviews)
    app.page("/quality")(quality_view)
    return quality
