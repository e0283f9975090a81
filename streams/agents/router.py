"""Router agent: each StudyAnnounced becomes one work item per applicable AI service, a
not_applicable Finding when none applies, or a DeadLetter when the event is bad.

It also remembers a fingerprint per study_uid (a table co-partitioned with the studies topic,
written by this single-concurrency agent only), so a second announcement that contradicts the
first is dead-lettered as `duplicate_conflict` while an identical re-announcement goes through.
A fingerprint is forgotten after RADSTREAM_DEDUP_HORIZON_S of event time (streams/rules/horizon.py):
an announcement more than a horizon after the first is taken as new.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import faust
import orjson
from faust.exceptions import PartitionsMismatch

from streams.agents.outcomes import Headers, Outbox, Sink, reject, take_pipelined
from streams.agents.table_writes import Table, current, forget_expired, write_stamped
from streams.context import WorkerContext
from streams.contract import topics
from streams.contract.catalog import NOT_APPLICABLE_SERVICE, catalog
from streams.contract.cloudevents import utc_now_rfc3339
from streams.contract.events import finding_not_applicable
from streams.contract.reasons import InputRejected, Reason
from streams.contract.topics import DEPLOYMENT_HEADER
from streams.metrics import Metrics
from streams.rules.horizon import Horizon, stamp
from streams.rules.intake import parse_study, study_fingerprint
from streams.rules.routing import lane, route
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long the router waits for its table's changelog topic to show partitions on a fresh
#: cluster (Faust creates it at start-up; consumer metadata catches up within seconds).
CHANGELOG_WAIT_S = 60.0


@dataclass
class Router:
    settings: Settings
    metrics: Metrics
    #: study_uid -> {"f": fingerprint of its first accepted announcement, and its horizon
    #: stamp}: a table co-partitioned with the studies topic, written by this agent only.
    fingerprints: Table
    horizon: Horizon

    @property
    def _deployment(self) -> Headers:
        return [(DEPLOYMENT_HEADER, self.settings.app_id.encode())]

    def check_duplicate(self, event: faust.EventT, study: dict[str, object]) -> None:
        """Dead-letter a contradicting re-announcement; remember the first one."""
        uid = str(study["study_uid"])
        fingerprint = study_fingerprint(study)
        known = self.fingerprints.get(uid)
        if known is None:
            with current(event):
                write_stamped(self.fingerprints, self.horizon, uid,
                              stamp({"f": fingerprint}, event.message.partition,
                                    event.message.timestamp))
        # A bare string is an entry written before fingerprints were stamped.
        elif (known["f"] if isinstance(known, dict) else known) != fingerprint:
            raise InputRejected(Reason.DUPLICATE_CONFLICT,
                                f"study {uid} was announced before with different content")

    async def remember(self, event: faust.EventT, study: dict[str, object]) -> None:
        """check_duplicate, waiting out a changelog topic that is still being created.

        On a fresh broker the first events can arrive before the consumer's metadata shows the
        fingerprint changelog's partitions, and Faust then refuses the table write
        (PartitionsMismatch, "... has 0 partitions"): that is the cluster starting, not a bad
        study, so it must not become a dead letter.
        """
        deadline = asyncio.get_running_loop().time() + CHANGELOG_WAIT_S
        while True:
            try:
                self.check_duplicate(event, study)
                return
            except PartitionsMismatch:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.info("router: fingerprint changelog not ready yet; retrying")
                await asyncio.sleep(0.5)

    async def route_events(self, events: list[faust.EventT], sink: Sink) -> None:
        """Route a batch into `sink`: every event ends as work items, a not_applicable Finding
        or a DeadLetter (flushing is the caller's)."""
        metrics = self.metrics
        for event in events:
            metrics.studies_received.inc()
            try:
                study = parse_study(event.message.value, headers=event.message.headers,
                                    max_bytes=self.settings.max_event_bytes)
                await self.remember(event, study)
                services = route(study, catalog())
                if not services:
                    body = finding_not_applicable(study, utc_now_rfc3339())
                    await sink.send(topics.FINDINGS.name, study["study_uid"], body)
                    metrics.findings.labels(service=NOT_APPLICABLE_SERVICE,
                                            status="not_applicable").inc()
                    continue
                for spec in services:
                    # The validated body travels on unchanged: the work item *is* the
                    # announcement.
                    work = topics.work_topic(spec.id, lane(spec, study))
                    await sink.forward(work.name, study["study_uid"], orjson.dumps(study),
                                       headers=self._deployment)
                    metrics.work_items.labels(service=spec.id).inc()
            except Exception as exc:  # bad input or a bug: a DeadLetter, never an agent crash
                await reject(sink, metrics.deadletters, event, exc)
        # Each partition's last event: it advances that partition's event time.
        for event in {e.message.partition: e for e in events}.values():
            forget_expired(self.fingerprints, self.horizon, event)


def register(ctx: WorkerContext) -> Router:
    """The router agent on the studies topic, with its fingerprint table."""
    settings = ctx.settings
    studies = ctx.topic(topics.STUDIES)
    router = Router(
        settings, ctx.metrics,
        ctx.app.Table("study-fingerprints", partitions=studies.partitions),
        Horizon(settings.dedup_horizon_s,
                per_call=settings.forget_per_call(settings.batch_max)))

    async def route_batch(events: list[faust.EventT]) -> Outbox:
        outbox = Outbox("radstream/router", ctx.topics)
        await router.route_events(events, outbox)
        return outbox  # sent, not yet acknowledged by the broker: flushed by the next stage

    async def flush(events: list[faust.EventT], outbox: Outbox) -> None:
        await outbox.flush()

    async def route_studies(stream: faust.StreamT[bytes]) -> None:
        # The next batch is routed while the broker acknowledges the last one's work items: a
        # backlog ahead of an emergency study is passed sooner.
        await take_pipelined(stream, settings.batch_max, settings.batch_within_s,
                             route_batch, flush)

    ctx.app.agent(studies, name="router")(route_studies)
    return router
