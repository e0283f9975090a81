"""Inference agents, one per AI service (two with a priority lane): micro-batch work items, read
and check each study's series and preprocess its pixels in worker processes (never on the event
loop; streams/agents/prepare_pool.py), run one batched Triton call, publish one Finding and one
Latency event per study.

A study whose images fail a technical-defect check (streams/imaging/defects.py) gets a
technical_defect
Finding with the reason instead of a model guess; a broken file or event gets a DeadLetter.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
import numpy as np

from streams.agents.outcomes import Outbox, reject, take_events, take_pipelined
from streams.agents.prepare_pool import PreparePool
from streams.app import (
    app,
    deadletter_topic,
    findings_topic,
    latency_topic,
    metrics,
    priority_topics,
    services,
    settings,
    work_topics,
)
from streams.contract.catalog import ServiceSpec
from streams.contract.cloudevents import parse_rfc3339, utc_now_rfc3339
from streams.contract.events import finding_ok, finding_technical_defect, latency
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.contract.topics import DEPLOYMENT_HEADER
from streams.imaging.preparation import ReadLimits
from streams.rules.intake import parse_study
from streams.rules.priority import PriorityGate
from streams.triton.circuit import CircuitState
from streams.triton.client import InferenceRejected, TritonModelClient

log = logging.getLogger(__name__)

_deployment = settings.app_id.encode()

def _circuit_changed(model: str, state: CircuitState) -> None:
    metrics.triton_circuit.labels(model=model).set(state)
    if state is CircuitState.OPEN:
        metrics.triton_circuit_opens.labels(model=model).inc()


_preparer = PreparePool(
    ReadLimits(settings.dicom_roots, settings.max_file_bytes, settings.max_pixel_bytes),
    processes=settings.preprocess_processes, threads=settings.preprocess_threads)
_triton = TritonModelClient(
    settings.triton_grpc, attempts=settings.triton_attempts, timeout_s=settings.triton_timeout_s,
    on_retry=lambda model: metrics.triton_retries.labels(model=model).inc(),
    on_circuit=_circuit_changed)


@dataclass
class Prepared:
    event: faust.EventT
    study: dict[str, Any]
    tensor: np.ndarray
    consumed_at: float
    fetch_s: float
    preprocess_s: float


def routed_here(event: faust.EventT) -> bool:
    """Whether this deployment's router made the work item (see topics.DEPLOYMENT_HEADER).

    Items routed by another deployment get their outcome from that deployment's own agents;
    items without the header (older routers) are processed.
    """
    headers = event.message.headers or []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in cast(Iterable[tuple[str, bytes]], pairs):
        if name == DEPLOYMENT_HEADER:
            return bool(value == _deployment)
    return True


async def infer_batch(spec: ServiceSpec, events: list[faust.EventT], *,
                      priority: bool = False) -> None:
    prepared = await prepare_batch(spec, events, priority=priority)
    await finish_batch(spec, prepared)


@dataclass
class PreparedBatch:
    """A micro-batch read and preprocessed, with the outcomes of the studies that failed."""

    outbox: Outbox
    prepared: list[Prepared]


async def prepare_batch(spec: ServiceSpec, events: list[faust.EventT], *,
                        priority: bool = False) -> PreparedBatch:
    outbox = Outbox(f"radstream/service/{spec.id}")
    consumed_at = time.time()
    parsed: list[tuple[faust.EventT, dict[str, Any]]] = []
    for event in events:
        if not routed_here(event):
            continue
        try:
            parsed.append((event, parse_study(event.message.value,
                                              max_bytes=settings.max_event_bytes)))
        except Exception as exc:  # one bad study must not take the batch (or the agent) down
            await _failed(spec, outbox, event, None, exc)
    results = await _preparer.prepare_many(spec, [study for _, study in parsed],
                                           priority=priority)
    prepared: list[Prepared] = []
    for (event, study), result in zip(parsed, results, strict=True):
        if isinstance(result, Exception):
            await _failed(spec, outbox, event, study, result)
        else:
            tensor, fetch_s, prep_s = result
            prepared.append(Prepared(event, study, tensor, consumed_at, fetch_s, prep_s))
    return PreparedBatch(outbox, prepared)


async def _failed(spec: ServiceSpec, outbox: Outbox, event: faust.EventT,
                  study: dict[str, Any] | None, exc: Exception) -> None:
    """A technical defect of a study's images becomes its Finding; anything else about the
    event or its files a DeadLetter."""
    if isinstance(exc, InputRejected) and study is not None and exc.reason in TECHNICAL_DEFECTS:
        body = finding_technical_defect(study, spec, exc.reason.value, utc_now_rfc3339(),
                                        exc.detail)
        await outbox.send(findings_topic, study["study_uid"], body)
        metrics.findings.labels(service=spec.id, status="technical_defect").inc()
    else:
        await reject(outbox, deadletter_topic, metrics.deadletters, event, exc, service=spec.id)


async def finish_batch(spec: ServiceSpec, batch: PreparedBatch) -> None:
    """One Triton call for the batch, its Findings and Latency events, and every outcome of the
    batch acknowledged by the broker."""
    if batch.prepared:
        await run_model(spec, batch.prepared, batch.outbox)
    await batch.outbox.flush()


async def run_model(spec: ServiceSpec, prepared: list[Prepared], outbox: Outbox) -> None:
    batch = np.stack([p.tensor for p in prepared])
    metrics.batch_size.labels(service=spec.id).observe(len(prepared))
    t0 = time.perf_counter()
    outputs = (spec.output_name, spec.measurement_output) if spec.measurement_output \
        else (spec.output_name,)
    try:
        results = await _triton.infer_outputs(spec.model, spec.model_version, spec.input_name,
                                              outputs, batch)
    except InferenceRejected as exc:
        failed = InputRejected(Reason.INFERENCE_FAILED, str(exc))
        for p in prepared:
            await reject(outbox, deadletter_topic, metrics.deadletters, p.event, failed,
                         service=spec.id)
        return
    infer_s = time.perf_counter() - t0

    scores = results[0]
    values = results[1] if len(results) > 1 else [None] * len(prepared)
    t1 = time.perf_counter()
    for p, row, measured in zip(prepared, scores, values, strict=True):
        body = finding_ok(p.study, spec, [float(x) for x in np.atleast_1d(row)],
                          utc_now_rfc3339(),
                          None if measured is None else [float(x) for x in np.atleast_1d(measured)])
        await outbox.send(findings_topic, p.study["study_uid"], body)
        metrics.findings.labels(service=spec.id, status="ok").inc()
    await outbox.flush()
    publish_s = time.perf_counter() - t1
    done = time.time()

    for p in prepared:
        published = parse_rfc3339(p.study["published_at"]).timestamp()
        acquired = parse_rfc3339(p.study["acquired_at"]).timestamp()
        stages = {"queue": p.consumed_at - published, "fetch": p.fetch_s,
                  "preprocess": p.preprocess_s, "infer": infer_s, "publish": publish_s}
        for stage, seconds in stages.items():
            metrics.stage_seconds.labels(service=spec.id, stage=stage).observe(max(0.0, seconds))
        metrics.end_to_end_seconds.labels(service=spec.id,
                                          priority=p.study["priority"]).observe(done - published)
        body = latency(p.study, spec, stages, done - published, done - acquired,
                       len(prepared), utc_now_rfc3339())
        await outbox.send(latency_topic, p.study["study_uid"], body)


def _make_agents(spec: ServiceSpec) -> None:
    if settings.model_override:
        # Benchmarks only (RADSTREAM_MODEL_OVERRIDE): same tensors, another Triton model; the
        # Findings then name that model, so nobody mistakes them for the service's own.
        spec = dataclasses.replace(spec, model=settings.model_override, model_version="1",
                                   measurement_output="")
    gate = PriorityGate()

    async def prepare_routine(events: list[faust.EventT]) -> PreparedBatch:
        await gate.routine_turn()
        return await prepare_batch(spec, events)

    async def finish(events: list[faust.EventT], batch: PreparedBatch) -> None:
        await finish_batch(spec, batch)

    async def infer(stream: faust.StreamT[bytes]) -> None:
        # Routine lanes carry the volume: the next batch is read and preprocessed while the
        # previous one is inferred and published.
        await take_pipelined(stream, settings.batch_max, settings.batch_within_s,
                             prepare_routine, finish)

    async def infer_priority(stream: faust.StreamT[bytes]) -> None:
        async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
            async with gate.priority_work():
                await infer_batch(spec, events, priority=True)

    app.agent(work_topics[spec.id], name=f"infer-{spec.id}")(infer)
    if spec.id in priority_topics:
        app.agent(priority_topics[spec.id], name=f"infer-{spec.id}-priority")(infer_priority)


for _spec in services:
    _make_agents(_spec)


@app.task
async def start_preparation() -> None:
    if services:
        _preparer.warm_up()
