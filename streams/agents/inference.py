"""Inference agents, one per AI service (two with a priority lane): micro-batch work items, read
and check each study's series and preprocess its pixels in worker processes (never on the event
loop; streams/agents/prepare_pool.py), run one batched Triton call, publish one Finding and one
Latency event per study.

A study whose images fail a technical-defect check (streams/imaging/defects.py) gets a
technical_defect Finding with the reason instead of a model guess; a broken file or event gets
a DeadLetter, and so does a study the worker itself failed on (`internal_error`): a batch always
ends, so its partition never stops on one study.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faust
import numpy as np

from streams.agents.outcomes import Outbox, Sink, reject, take_events, take_pipelined
from streams.agents.prepare_pool import Prepared as PreparedImages
from streams.agents.prepare_pool import PreparePool
from streams.context import WorkerContext
from streams.contract import topics
from streams.contract.catalog import ServiceSpec
from streams.contract.cloudevents import parse_rfc3339, utc_now_rfc3339
from streams.contract.events import finding_ok, finding_technical_defect, latency
from streams.contract.reasons import TECHNICAL_DEFECTS, InputRejected, Reason
from streams.contract.topics import DEPLOYMENT_HEADER
from streams.imaging.preparation import ReadLimits
from streams.imaging.wado import ArchiveAccess
from streams.metrics import Metrics
from streams.rules.intake import parse_study
from streams.rules.priority import PriorityGate
from streams.settings import Settings
from streams.triton.circuit import CircuitBreaker, CircuitState
from streams.triton.client import InferenceRejected, RowResult, TritonModelClient

log = logging.getLogger(__name__)


class Preparer(Protocol):
    async def prepare_many(self, spec: ServiceSpec, studies: list[dict[str, Any]], *,
                           priority: bool = False) -> list[PreparedImages | Exception]: ...


class ModelClient(Protocol):
    async def infer_rows(self, model: str, version: str, input_name: str,
                         output_names: tuple[str, ...], batch: np.ndarray) -> list[RowResult]: ...


class Engines(Protocol):
    """Where a lane reads images and runs models."""

    @property
    def preparer(self) -> Preparer: ...

    @property
    def model(self) -> ModelClient: ...


class InferenceRuntime:
    """The worker's preprocessing pool and Triton client, shared by every lane. Both are made on
    first use, inside the running worker: building the app starts no process and no channel."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._preparer: PreparePool | None = None
        self._model: TritonModelClient | None = None

    @property
    def preparer(self) -> PreparePool:
        if self._preparer is None:
            s = self._settings
            self._preparer = PreparePool(
                ReadLimits(s.dicom_roots, s.max_file_bytes, s.max_pixel_bytes,
                           s.max_dicom_elements, s.max_parse_s, s.max_prepare_bytes,
                           # Triton's breaker class, one per archive in each process.
                           ArchiveAccess(s.archive_urls, s.archive_timeout_s, s.archive_attempts,
                                         s.archive_max_series_bytes, CircuitBreaker)),
                processes=s.preprocess_processes, threads=s.preprocess_threads)
        return self._preparer

    @property
    def model(self) -> TritonModelClient:
        if self._model is None:
            s, metrics = self._settings, self._metrics
            self._model = TritonModelClient(
                s.triton_grpc, attempts=s.triton_attempts, timeout_s=s.triton_timeout_s,
                on_retry=lambda model: metrics.triton_retries.labels(model=model).inc(),
                on_circuit=self._circuit_changed)
        return self._model

    def _circuit_changed(self, model: str, state: CircuitState) -> None:
        self._metrics.triton_circuit.labels(model=model).set(state)
        if state is CircuitState.OPEN:
            self._metrics.triton_circuit_opens.labels(model=model).inc()


@dataclass
class Prepared:
    event: faust.EventT
    study: dict[str, Any]
    tensor: np.ndarray
    consumed_at: float
    fetch_s: float
    preprocess_s: float


@dataclass
class Lane:
    """One AI service's inference: the batch functions its agents run."""

    spec: ServiceSpec
    settings: Settings
    metrics: Metrics
    engines: Engines

    @property
    def source(self) -> str:
        return f"radstream/service/{self.spec.id}"

    def routed_here(self, event: faust.EventT) -> bool:
        """Whether this deployment's router made the work item (see topics.DEPLOYMENT_HEADER).

        Items routed by another deployment get their outcome from that deployment's own agents;
        items without the header (older routers) are processed.
        """
        headers = event.message.headers or []
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in cast(Iterable[tuple[str, bytes]], pairs):
            if name == DEPLOYMENT_HEADER:
                return bool(value == self.settings.app_id.encode())
        return True

    async def infer_batch(self, events: list[faust.EventT], sink: Sink, *,
                          priority: bool = False) -> None:
        await self.finish_batch(await self.prepare_batch(events, sink, priority=priority), sink)

    async def prepare_batch(self, events: list[faust.EventT], sink: Sink, *,
                            priority: bool = False) -> list[Prepared]:
        """Read and preprocess a batch; the studies that failed get their outcome in `sink`."""
        consumed_at = time.time()
        parsed: list[tuple[faust.EventT, dict[str, Any]]] = []
        for event in events:
            if not self.routed_here(event):
                continue
            try:
                parsed.append((event, parse_study(event.message.value,
                                                  max_bytes=self.settings.max_event_bytes)))
            except Exception as exc:  # one bad study must not take the batch (or agent) down
                await self._failed(sink, event, None, exc)
        try:
            results = await self.engines.preparer.prepare_many(
                self.spec, [study for _, study in parsed], priority=priority)
        except Exception as exc:  # a bug around the pool: no study of the batch is read
            results = [exc] * len(parsed)
        prepared: list[Prepared] = []
        for (event, study), result in zip(parsed, results, strict=True):
            if isinstance(result, Exception):
                await self._failed(sink, event, study, result)
            else:
                tensor, fetch_s, prep_s = result
                prepared.append(Prepared(event, study, tensor, consumed_at, fetch_s, prep_s))
        return prepared

    async def _failed(self, sink: Sink, event: faust.EventT, study: dict[str, Any] | None,
                      exc: Exception) -> None:
        """A technical defect of a study's images becomes its Finding; anything else about the
        event or its files a DeadLetter."""
        if (isinstance(exc, InputRejected) and study is not None
                and exc.reason in TECHNICAL_DEFECTS):
            body = finding_technical_defect(study, self.spec, exc.reason.value,
                                            utc_now_rfc3339(), exc.detail)
            await sink.send(topics.FINDINGS.name, study["study_uid"], body)
            self.metrics.findings.labels(service=self.spec.id, status="technical_defect").inc()
        else:
            await reject(sink, self.metrics.deadletters, event, exc, service=self.spec.id)

    async def finish_batch(self, prepared: list[Prepared], sink: Sink) -> None:
        """One Triton call for the batch, its Findings and Latency events, and every outcome of
        the batch acknowledged by the broker."""
        if prepared:
            await self.run_model(prepared, sink)
        await sink.flush()

    async def run_model(self, prepared: list[Prepared], sink: Sink) -> None:
        spec, metrics = self.spec, self.metrics
        metrics.batch_size.labels(service=spec.id).observe(len(prepared))
        t0 = time.perf_counter()
        outputs = (spec.output_name, spec.measurement_output) if spec.measurement_output \
            else (spec.output_name,)
        try:
            rows = await self.engines.model.infer_rows(
                spec.model, spec.model_version, spec.input_name, outputs,
                np.stack([p.tensor for p in prepared]))
            if len(rows) != len(prepared):
                raise RuntimeError(f"{spec.model} answered {len(rows)} rows "
                                   f"for {len(prepared)} studies")
        except InferenceRejected as exc:
            failed = InputRejected(Reason.INFERENCE_FAILED, str(exc))
            for p in prepared:
                await reject(sink, metrics.deadletters, p.event, failed, service=spec.id)
            return
        except Exception as exc:  # a bug: no study of the batch has its Finding yet
            for p in prepared:
                await reject(sink, metrics.deadletters, p.event, exc, service=spec.id)
            return
        infer_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        found: list[Prepared] = []
        for p, row in zip(prepared, rows, strict=True):
            try:
                if isinstance(row, InferenceRejected):  # Triton refused this study alone
                    raise InputRejected(Reason.INFERENCE_FAILED, str(row))
                measured = row[1] if len(row) > 1 else None
                body = finding_ok(
                    p.study, spec, [float(x) for x in np.atleast_1d(row[0])], utc_now_rfc3339(),
                    None if measured is None else [float(x) for x in np.atleast_1d(measured)])
                await sink.send(topics.FINDINGS.name, p.study["study_uid"], body)
            except Exception as exc:  # this study's outcome is then its DeadLetter
                await reject(sink, metrics.deadletters, p.event, exc, service=spec.id)
                continue
            metrics.findings.labels(service=spec.id, status="ok").inc()
            found.append(p)
        await sink.flush()
        publish_s = time.perf_counter() - t1
        done = time.time()
        for p in found:
            try:
                await self._send_latency(p, sink, len(prepared), done,
                                         {"infer": infer_s, "publish": publish_s})
            except Exception:
                # The study has its outcome (the Finding just acknowledged); raising here would
                # leave the batch unacknowledged and every redelivery would repeat its Findings.
                msg = p.event.message
                log.exception("%s: no Latency event for %s[%d]@%d", spec.id, msg.topic,
                              msg.partition, msg.offset)

    async def _send_latency(self, p: Prepared, sink: Sink, batch_size: int, done: float,
                            shared: Mapping[str, float]) -> None:
        spec, metrics = self.spec, self.metrics
        published = parse_rfc3339(p.study["published_at"]).timestamp()
        acquired = parse_rfc3339(p.study["acquired_at"]).timestamp()
        stages = {"queue": p.consumed_at - published, "fetch": p.fetch_s,
                  "preprocess": p.preprocess_s, **shared}
        for stage, seconds in stages.items():
            metrics.stage_seconds.labels(service=spec.id, stage=stage).observe(max(0.0, seconds))
        metrics.end_to_end_seconds.labels(service=spec.id,
                                          priority=p.study["priority"]).observe(done - published)
        body = latency(p.study, spec, stages, done - published, done - acquired, batch_size,
                       utc_now_rfc3339())
        await sink.send(topics.LATENCY.name, p.study["study_uid"], body)


def _register_lane(ctx: WorkerContext, lane: Lane) -> None:
    settings, spec = ctx.settings, lane.spec
    gate = PriorityGate()

    async def prepare_routine(events: list[faust.EventT]) -> tuple[Outbox, list[Prepared]]:
        await gate.routine_turn()
        outbox = Outbox(lane.source, ctx.topics)
        return outbox, await lane.prepare_batch(events, outbox)

    async def finish(events: list[faust.EventT], batch: tuple[Outbox, list[Prepared]]) -> None:
        outbox, prepared = batch
        await lane.finish_batch(prepared, outbox)

    async def infer(stream: faust.StreamT[bytes]) -> None:
        # Routine lanes carry the volume: the next batch is read and preprocessed while the
        # previous one is inferred and published.
        await take_pipelined(stream, settings.batch_max, settings.batch_within_s,
                             prepare_routine, finish)

    async def infer_priority(stream: faust.StreamT[bytes]) -> None:
        async for events in take_events(stream, settings.batch_max, settings.batch_within_s):
            async with gate.priority_work():
                await lane.infer_batch(events, Outbox(lane.source, ctx.topics), priority=True)

    ctx.app.agent(ctx.topic(topics.work_topic(spec.id)), name=f"infer-{spec.id}")(infer)
    if spec.priority_lane:
        ctx.app.agent(ctx.topic(topics.work_topic(spec.id, "priority")),
                      name=f"infer-{spec.id}-priority")(infer_priority)


def register(ctx: WorkerContext) -> list[Lane]:
    """An inference lane (and its agents) per service this worker runs (RADSTREAM_SERVICES)."""
    settings = ctx.settings
    runtime = InferenceRuntime(settings, ctx.metrics)
    lanes = []
    for spec in ctx.services:
        if settings.model_override:
            # Benchmarks only (RADSTREAM_MODEL_OVERRIDE): same tensors, another Triton model;
            # the Findings then name that model, so nobody mistakes them for the service's own.
            spec = dataclasses.replace(spec, model=settings.model_override, model_version="1",
                                       measurement_output="")
        lane = Lane(spec, settings, ctx.metrics, runtime)
        _register_lane(ctx, lane)
        lanes.append(lane)

    async def start_preparation() -> None:
        """Start the preprocessing processes now rather than on the first study (a second)."""
        runtime.preparer.warm_up()

    if lanes:
        ctx.app.task(start_preparation)
    return lanes
