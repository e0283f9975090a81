"""Inference agents, one per AI service: micro-batch work items, decode and preprocess pixels
in a thread pool (never on the event loop), run one batched Triton call, publish one Finding and
one Latency event per study."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import faust
import numpy as np

from services.dicom_io import read_image, resolve_uri
from services.triton.client import InferenceRejected, TritonModelClient
from streams.agents.outcomes import Outbox, reject, take_events
from streams.app import (
    app,
    deadletter_topic,
    findings_topic,
    latency_topic,
    metrics,
    services,
    settings,
    work_topics,
)
from streams.catalog import ServiceSpec
from streams.circuit import CircuitState
from streams.cloudevents import parse_rfc3339, utc_now_rfc3339
from streams.events import finding_ok, latency
from streams.intake import parse_study
from streams.preprocess import to_model_input
from streams.reasons import InputRejected, Reason
from streams.routing import matching_series
from streams.topics import DEPLOYMENT_HEADER

log = logging.getLogger(__name__)

_deployment = settings.app_id.encode()

def _circuit_changed(model: str, state: CircuitState) -> None:
    metrics.triton_circuit.labels(model=model).set(state)
    if state is CircuitState.OPEN:
        metrics.triton_circuit_opens.labels(model=model).inc()


_pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
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


def load_and_preprocess(spec: ServiceSpec,
                        study: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """Runs in the thread pool: file I/O, DICOM decoding and pixel work."""
    series = matching_series(spec, study)
    if not series:
        raise InputRejected(Reason.SCHEMA_VIOLATION, f"no series for service {spec.id}")
    t0 = time.perf_counter()
    image = read_image(resolve_uri(series[0]["uri"], settings.dicom_roots),
                       max_bytes=settings.max_file_bytes, max_pixel_bytes=settings.max_pixel_bytes)
    t1 = time.perf_counter()
    tensor = to_model_input(image.pixels, photometric=image.photometric, slope=image.slope,
                            intercept=image.intercept, window_center=image.window_center,
                            window_width=image.window_width)
    return tensor, t1 - t0, time.perf_counter() - t1


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


async def infer_batch(spec: ServiceSpec, events: list[faust.EventT]) -> None:
    loop = asyncio.get_running_loop()
    outbox = Outbox(f"radstream/service/{spec.id}")
    consumed_at = time.time()

    async def prepare(event: faust.EventT) -> Prepared | None:
        try:
            study = parse_study(event.message.value, max_bytes=settings.max_event_bytes)
            tensor, fetch_s, prep_s = await loop.run_in_executor(
                _pool, load_and_preprocess, spec, study)
            return Prepared(event, study, tensor, consumed_at, fetch_s, prep_s)
        except Exception as exc:  # one bad study must not take the batch (or the agent) down
            await reject(outbox, deadletter_topic, metrics.deadletters, event, exc,
                         service=spec.id)
        return None

    ours = [e for e in events if routed_here(e)]
    prepared = [p for p in await asyncio.gather(*(prepare(e) for e in ours)) if p]
    if prepared:
        await run_model(spec, prepared, outbox)
    await outbox.flush()


async def run_model(spec: ServiceSpec, prepared: list[Prepared], outbox: Outbox) -> None:
    batch = np.stack([p.tensor for p in prepared])
    metrics.batch_size.labels(service=spec.id).observe(len(prepared))
    t0 = time.perf_counter()
    try:
        scores = await _triton.infer(spec.model, spec.model_version, spec.input_name,
                                     spec.output_name, batch)
    except InferenceRejected as exc:
        failed = InputRejected(Reason.INFERENCE_FAILED, str(exc))
        for p in prepared:
            await reject(outbox, deadletter_topic, metrics.deadletters, p.event, failed,
                         service=spec.id)
        return
    infer_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    for p, row in zip(prepared, scores, strict=True):
        body = finding_ok(p.study, spec, [float(x) for x in np.atleast_1d(row)],
                          utc_now_rfc3339())
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


def _make_agent(spec: ServiceSpec) -> None:
    if settings.model_override:
        # Benchmarks only (RADSTREAM_MODEL_OVERRIDE): same tensors, another Triton model; the
        # Findings then name that model, so nobody mistakes them for the service's own.
        spec = dataclasses.replace(spec, model=settings.model_override, model_version="1")

    async def infer(stream: faust.StreamT[bytes]) -> None:
        async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
            await infer_batch(spec, events)

    app.agent(work_topics[spec.id], name=f"infer-{spec.id}")(infer)


for _spec in services:
    _make_agent(_spec)
