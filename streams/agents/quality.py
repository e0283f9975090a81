"""Quality monitor agents: join radiologist reviews with the AI's Finding scores, keep the
sliding windows, raise QualityAlerts on radiology.alerts.v1 and serve GET /quality.

Findings and reviews are both keyed by study_uid on topics with the same partition count, so a
table keyed "study_uid|service" is co-partitioned with both: each agent reads and writes the
entry of its own event's partition. A review that arrives before its Finding waits in that
entry until the Finding comes. The joins table is changelog-backed; the windows and alert
latches (streams/analytics/quality.py) live in this worker's memory and cover the partitions it
owns,
like the stats API (one worker, the default, sees the whole city).

A join entry is forgotten RADSTREAM_REVIEW_HORIZON_S of event time after its last write
(streams/rules/horizon.py): a review arriving later no longer finds its Finding and waits in turn; a
review that waited that long for a Finding is counted in
radstream_quality_reviews_unmatched_total.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import faust
import orjson

from streams.agents.outcomes import Outbox, send_deadletter
from streams.agents.table_writes import forget_expired, write_stamped
from streams.analytics.quality_monitor import QualityMonitor, QualityThresholds
from streams.analytics.review_join import (
    Joined,
    join_key,
    parse_review,
    record_finding,
    record_review,
)
from streams.analytics.review_windows import Subject
from streams.app import (
    alerts_topic,
    app,
    deadletter_topic,
    findings_topic,
    metrics,
    reviews_topic,
    settings,
)
from streams.contract import catalog
from streams.contract.cloudevents import utc_now_rfc3339
from streams.contract.reasons import InputRejected, Reason
from streams.rules.horizon import Horizon, stamp

log = logging.getLogger(__name__)

#: Alerts GET /quality lists, newest first.
RECENT_ALERTS = 50

monitor = QualityMonitor(QualityThresholds(
    auc_floor=settings.quality_auc_floor,
    auc_z=settings.quality_auc_z,
    min_reviews=settings.quality_min_reviews,
    window=settings.quality_window,
    device_window=settings.quality_device_window,
    defect_ceiling=settings.quality_defect_ceiling,
    defect_window=settings.quality_defect_window,
    defect_min_findings=settings.quality_defect_min_findings,
    rearm_margin=settings.quality_rearm_margin,
))
recent_alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)

#: Every catalogued service is monitored, whichever inference agents this worker runs.
_SERVICES = {s.id: s for s in catalog.catalog()}

joins = app.Table("quality-joins", default=None, partitions=reviews_topic.partitions)
#: Event time per partition, shared by both agents: they write the same partitions of `joins`.
horizon = Horizon(settings.review_horizon_s, per_call=settings.forget_per_call(settings.batch_max))


def _write(event: faust.EventT, key: str, entry: dict[str, Any]) -> None:
    write_stamped(joins, horizon, key,
                  stamp(entry, event.message.partition, event.message.timestamp))


def _forget(event: faust.EventT) -> None:
    for key, entry in forget_expired(joins, horizon, event):
        if entry.get("pending"):
            service = str(key).rsplit("|", 1)[-1]
            metrics.quality_reviews_unmatched.labels(service=service).inc(len(entry["pending"]))


async def _publish(outbox: Outbox, alerts: list[dict[str, Any]]) -> None:
    for alert in alerts:
        await outbox.send(alerts_topic, alert["service"], alert)
        metrics.quality_alerts.labels(service=alert["service"], kind=alert["kind"]).inc()
        recent_alerts.appendleft(alert)
        log.warning("quality alert %s: service %s finding %s device %s: %.3f vs %.3f",
                    alert["kind"], alert["service"], alert.get("finding"),
                    alert.get("device_id"), alert["value"], alert["threshold"])


def _observe(joined: list[Joined], now: str) -> list[dict[str, Any]]:
    alerts = []
    for j in joined:
        alerts += monitor.add_review(j.subject, j.observation, now=now)
        service, finding = j.subject.service, j.subject.finding or ""
        metrics.quality_reviews.labels(service=service, finding=finding).inc()
        s = monitor.summary(Subject(service, finding))
        for gauge, value in ((metrics.quality_auc, s.auc),
                             (metrics.quality_sensitivity, s.sensitivity),
                             (metrics.quality_specificity, s.specificity)):
            if value is not None:
                gauge.labels(service=service, finding=finding).set(value)
    return alerts


@app.agent(findings_topic, name="quality-findings")
async def quality_findings(stream: faust.StreamT[bytes]) -> None:
    outbox = Outbox("radstream/quality")
    async for event in stream.events():
        _forget(event)
        try:
            finding = orjson.loads(event.message.value)
            service = finding["service"]
            if service not in _SERVICES or finding["status"] not in ("ok", "technical_defect"):
                continue
            key = join_key(finding["study_uid"], service)
            entry, joined, new = record_finding(joins.get(key), finding)
            if not new:
                continue
            _write(event, key, entry)
            now = utc_now_rfc3339()
            alerts = monitor.add_finding(service, finding.get("device_id"),
                                         defective=finding["status"] == "technical_defect",
                                         at=finding["produced_at"], now=now,
                                         model=finding["model"])
            rate = monitor.defect_rate(service)
            if rate is not None:
                metrics.technical_defect_ratio.labels(service=service).set(rate)
            await _publish(outbox, alerts + _observe(joined, now))
            await outbox.flush()
        except Exception:  # findings are our own validated output; log and keep monitoring
            log.exception("quality: could not take a finding into account")


@app.agent(reviews_topic, name="quality-reviews")
async def quality_reviews(stream: faust.StreamT[bytes]) -> None:
    outbox = Outbox("radstream/quality")
    async for event in stream.events():
        _forget(event)
        try:
            review = parse_review(event.message.value)
            if review["service"] not in _SERVICES:
                raise InputRejected(Reason.SCHEMA_VIOLATION,
                                    "$.service: not an AI service of the catalogue")
            key = join_key(review["study_uid"], review["service"])
            entry, joined = record_review(joins.get(key), review)
            _write(event, key, entry)
            await _publish(outbox, _observe(joined, utc_now_rfc3339()))
        except InputRejected as exc:
            metrics.deadletters.labels(reason=exc.reason.value).inc()
            await send_deadletter(outbox, deadletter_topic, event, exc.reason, exc.detail)
        except Exception as exc:  # never lose a review silently: dead-letter it with the cause
            log.exception("quality: unexpected error on a review")
            metrics.deadletters.labels(reason=Reason.INTERNAL_ERROR.value).inc()
            await send_deadletter(outbox, deadletter_topic, event, Reason.INTERNAL_ERROR,
                                  f"{type(exc).__name__}: {exc}")
        await outbox.flush()


@app.page("/quality")
async def quality_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
    monitored = []
    for spec in _SERVICES.values():
        try:
            monitored += [(spec.id, f.code, f.threshold) for f in spec.findings]
        except catalog.CatalogError as exc:  # a model without a card: report the others
            log.warning("quality: %s not monitored: %s", spec.id, exc)
    body = monitor.report(monitored, list(recent_alerts))
    return web.bytes(orjson.dumps(body), content_type="application/json")
