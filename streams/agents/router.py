"""Router agent: each StudyAnnounced becomes one work item per applicable AI service, a
not_applicable Finding when none applies, or a DeadLetter when the event is bad."""

from __future__ import annotations

import logging

import faust
import orjson

from streams.agents.outcomes import Outbox, send_deadletter, take_events
from streams.app import app, deadletter_topic, findings_topic, metrics, settings, studies_topic
from streams.app import work_topics as _work_topics
from streams.catalog import NOT_APPLICABLE_SERVICE, catalog
from streams.cloudevents import utc_now_rfc3339
from streams.events import finding_not_applicable
from streams.intake import parse_study
from streams.reasons import InputRejected, Reason
from streams.routing import route

log = logging.getLogger(__name__)


async def route_batch(events: list[faust.EventT]) -> None:
    outbox = Outbox("radstream/router")
    for event in events:
        metrics.studies_received.inc()
        try:
            study = parse_study(event.message.value)
            services = route(study, catalog())
            if not services:
                body = finding_not_applicable(study, utc_now_rfc3339())
                await outbox.send(findings_topic, study["study_uid"], body)
                metrics.findings.labels(service=NOT_APPLICABLE_SERVICE,
                                        status="not_applicable").inc()
                continue
            for spec in services:
                # The validated body travels on unchanged: the work item *is* the announcement.
                await outbox.forward(_work_topics[spec.id], study["study_uid"],
                                     orjson.dumps(study))
                metrics.work_items.labels(service=spec.id).inc()
        except InputRejected as exc:
            metrics.deadletters.labels(reason=exc.reason.value).inc()
            await send_deadletter(outbox, deadletter_topic, event, exc.reason, exc.detail)
        except Exception as exc:  # never let one event crash the agent (Faust would ack it)
            log.exception("router: unexpected error")
            metrics.deadletters.labels(reason=Reason.INTERNAL_ERROR.value).inc()
            await send_deadletter(outbox, deadletter_topic, event, Reason.INTERNAL_ERROR,
                                  f"{type(exc).__name__}: {exc}")
    await outbox.flush()


@app.agent(studies_topic, name="router")
async def router(stream: faust.StreamT[bytes]) -> None:
    async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
        await route_batch(events)
