"""Intake gate: per-hospital intake topics (`radiology.intake.<hospital_id>.v1`) forwarded to
`radiology.studies.v1` once the body's hospital_id is the topic's hospital. Runs for the
hospitals named in RADSTREAM_INTAKE_HOSPITALS.

On a secured cluster hospitals may write only their own intake topic (broker ACLs), and this
gate checks the other half: that the body does not claim another hospital. An impersonating
study is dead-lettered with `hospital_mismatch`. See streams/rules/origin.py and docs/security.md.
"""

from __future__ import annotations

import logging

import faust

from streams.agents.outcomes import Outbox, reject, take_events
from streams.app import app, deadletter_topic, metrics, settings, studies_topic
from streams.rules.intake import parse_study
from streams.rules.origin import check_origin, intake_topic

log = logging.getLogger(__name__)



async def gate_batch(events: list[faust.EventT]) -> None:
    outbox = Outbox("radstream/intake")
    for event in events:
        try:
            study = parse_study(event.message.value, headers=event.message.headers,
                                max_bytes=settings.max_event_bytes)
            check_origin(event.message.topic, study)
            # Forward the hospital's bytes unchanged: the router validates them again.
            await outbox.forward(studies_topic, study["study_uid"],
                                 event.message.value or b"")
        except Exception as exc:  # bad input or a bug: a DeadLetter, never an agent crash
            await reject(outbox, deadletter_topic, metrics.deadletters, event, exc)
    await outbox.flush()


async def intake_gate(stream: faust.StreamT[bytes]) -> None:
    async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
        await gate_batch(events)


# Explicit topic names: Faust's pattern subscriptions do not work (faust-streaming 0.15).
if settings.intake_hospitals:
    intake_topics = app.topic(*(intake_topic(h) for h in settings.intake_hospitals),
                              key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
    app.agent(intake_topics, name="intake-gate")(intake_gate)
