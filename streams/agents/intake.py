"""Intake gate: per-hospital intake topics (`radiology.intake.<hospital_id>.v1`) forwarded to
`radiology.studies.v1` once the body's hospital_id is the topic's hospital. Runs for the
hospitals named in RADSTREAM_INTAKE_HOSPITALS.

On a secured cluster hospitals may write only their own intake topic (broker ACLs), and this
gate checks the other half: that the body does not claim another hospital. An impersonating
study is dead-lettered with `hospital_mismatch`. See streams/rules/origin.py and docs/security.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from streams.agents.outcomes import Outbox, Sink, reject, take_events
from streams.context import WorkerContext, raw_topic
from streams.contract import topics
from streams.metrics import Metrics
from streams.rules.intake import parse_study
from streams.rules.origin import check_origin, intake_topic
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IntakeGate:
    settings: Settings
    metrics: Metrics

    async def gate_batch(self, events: list[faust.EventT], sink: Sink) -> None:
        """Forward each announcement that is its intake topic's hospital's to the studies
        topic, dead-letter the others; return once the broker has every outcome."""
        for event in events:
            try:
                study = parse_study(event.message.value, headers=event.message.headers,
                                    max_bytes=self.settings.max_event_bytes)
                check_origin(event.message.topic, study)
                # Forward the hospital's bytes unchanged: the router validates them again.
                await sink.forward(topics.STUDIES.name, study["study_uid"],
                                   event.message.value or b"")
            except Exception as exc:  # bad input or a bug: a DeadLetter, never an agent crash
                await reject(sink, self.metrics.deadletters, event, exc)
        await sink.flush()


def register(ctx: WorkerContext) -> IntakeGate | None:
    """The intake gate on the hospitals named in RADSTREAM_INTAKE_HOSPITALS, if any."""
    settings = ctx.settings
    if not settings.intake_hospitals:
        return None
    gate = IntakeGate(settings, ctx.metrics)

    async def intake_gate(stream: faust.StreamT[bytes]) -> None:
        async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
            await gate.gate_batch(events, Outbox("radstream/intake", ctx.topics))

    # Explicit topic names: Faust's pattern subscriptions do not work (faust-streaming 0.15).
    hospitals = raw_topic(ctx.app, *(intake_topic(h) for h in settings.intake_hospitals))
    ctx.app.agent(hospitals, name="intake-gate")(intake_gate)
    return gate
