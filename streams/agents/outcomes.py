"""Publishing outcomes (Findings, Latency, DeadLetters) and waiting until the broker has them.

Agents await every outcome's delivery before their batch returns, because returning is what lets
Faust acknowledge the input: an input is never acknowledged without its outcome on the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

import faust
import orjson
from prometheus_client import Counter

from streams.contract import topics
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.events import deadletter
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate

log = logging.getLogger(__name__)

T = TypeVar("T")

_KIND_OF_TOPIC = {
    topics.FINDINGS.name: (EventKind.FINDING, topics.FINDINGS.event_type),
    topics.LATENCY.name: (EventKind.LATENCY, topics.LATENCY.event_type),
    topics.DEADLETTER.name: (EventKind.DEADLETTER, topics.DEADLETTER.event_type),
    topics.ALERTS.name: (EventKind.QUALITY_ALERT, topics.ALERTS.event_type),
}


async def take_events(stream: faust.StreamT[bytes], max_: int,
                      within: float) -> AsyncIterator[list[faust.EventT]]:
    """Micro-batches of events, acknowledged only after the loop body that received the batch
    has finished normally, so agents publish every outcome before the ack.

    Faust's own `take()` acks its buffer in a `finally`, i.e. also when the body is cancelled
    (worker shutdown, rebalance) half-way through a batch: those studies would be acknowledged
    without an outcome. `noack_take()` leaves acking to us; a cancelled or failed batch is never
    acked and is redelivered to whichever worker owns the partition next.
    """
    s = cast(faust.Stream, stream)  # noack_take is missing from the StreamT interface
    async for events in s.noack_take(max_, within=within):
        batch = cast(list[faust.EventT], list(events))
        yield batch
        # Only reached when the consumer asks for the next batch, i.e. this one is done.
        for event in batch:
            await s.ack(event)


async def take_pipelined(stream: faust.StreamT[bytes], max_: int, within: float,
                         prepare: Callable[[list[faust.EventT]], Awaitable[T]],
                         finish: Callable[[list[faust.EventT], T], Awaitable[None]]) -> None:
    """Micro-batches in two stages that overlap: batch N+1 is prepared while batch N finishes.

    An inference lane spends a batch's time first in the preprocessing processes, then in
    Triton and the broker's acknowledgements, with the event loop and the processes each idle
    half the time. Here `prepare` of the next batch runs while `finish` of the previous one
    does. At most one `finish` is in flight, they run in batch order, and a batch is
    acknowledged only once its `finish` returned (as with take_events: never without its
    outcomes). On cancellation or an error, a batch whose `finish` did not return stays
    unacknowledged and is redelivered.
    """
    s = cast(faust.Stream, stream)  # noack_take is missing from the StreamT interface
    finishing: asyncio.Task[None] | None = None

    async def finish_then_ack(batch: list[faust.EventT], prepared: T) -> None:
        await finish(batch, prepared)
        for event in batch:
            await s.ack(event)

    try:
        async for events in s.noack_take(max_, within=within):
            batch = cast(list[faust.EventT], list(events))
            prepared = await prepare(batch)
            if finishing is not None:
                await finishing  # outcomes stay in batch order; its error stops the agent
            finishing = asyncio.ensure_future(finish_then_ack(batch, prepared))
        if finishing is not None:
            await finishing
    finally:
        if finishing is not None and not finishing.done():
            finishing.cancel()


Headers = list[tuple[str, bytes]]


class Sink(Protocol):
    """Where a batch function puts its outcomes: the Outbox in a worker, a list in unit tests.

    Topics are named by their contract name (streams/contract/topics.py). Nothing sent counts
    until `flush()` returned: only then may the inputs that caused it be acknowledged.
    """

    async def send(self, topic: str, key: str, body: Mapping[str, Any]) -> None:
        """A contract event (Finding, Latency, DeadLetter, QualityAlert), checked against its
        schema and sent with CloudEvents headers."""

    async def forward(self, topic: str, key: str, value: bytes,
                      headers: Headers | None = None) -> None:
        """An internal record (a work item, a gated announcement) as is."""

    async def flush(self) -> None:
        """Return once the broker acknowledged everything sent so far."""


def contract_type(topic: str, body: Mapping[str, Any]) -> str:
    """The CloudEvents type of an event for `topic`, once `body` matches the published contract
    (raises SchemaViolation otherwise: a bug of ours must fail loudly, never reach the bus)."""
    kind, ce_type = _KIND_OF_TOPIC[topic]
    validate(kind, body)
    return ce_type


class Outbox:
    """The worker's Sink: sends through Faust's producer; `flush()` waits until the broker
    acknowledged all of them."""

    def __init__(self, source: str, topics: Mapping[str, faust.TopicT]) -> None:
        self._source = source
        self._topics = topics
        self._pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, key: str, body: Mapping[str, Any]) -> None:
        ce_type = contract_type(topic, body)
        fut = await self._topics[topic].send(key=key.encode(), value=orjson.dumps(body),
                                             headers=ce_headers(ce_type, self._source),
                                             force=True)
        self._pending.append(fut)

    async def forward(self, topic: str, key: str, value: bytes,
                      headers: Headers | None = None) -> None:
        self._pending.append(await self._topics[topic].send(key=key.encode(), value=value,
                                                            headers=headers, force=True))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def reject(sink: Sink, counter: Counter, event: faust.EventT, exc: Exception, *,
                 service: str | None = None) -> None:
    """Turn an event that failed into its DeadLetter: the one way every agent does it.

    An InputRejected keeps its reason code; anything unforeseen becomes `internal_error`, logged
    with its traceback. Either way the agent goes on: if it raised, its batch would never be
    acknowledged, and every redelivery would fail again (a stopped partition).
    """
    if isinstance(exc, InputRejected):
        reason, detail = exc.reason, exc.detail
    else:
        log.error("unexpected error on %s[%d]@%d", event.message.topic, event.message.partition,
                  event.message.offset, exc_info=exc)
        reason, detail = Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
    counter.labels(reason=reason.value).inc()
    await send_deadletter(sink, event, reason, detail, service=service)


async def send_deadletter(sink: Sink, event: faust.EventT, reason: Reason, detail: str, *,
                          service: str | None = None) -> None:
    msg = event.message
    key = msg.key if isinstance(msg.key, bytes | str) else None
    payload = msg.value if isinstance(msg.value, bytes) else b""
    record = deadletter(reason, detail, topic=msg.topic, partition=msg.partition,
                        offset=msg.offset, key=key, payload=payload,
                        produced_at=utc_now_rfc3339(), service=service)
    out_key = record["key"] or ""  # already cut short: a huge key must not break the send
    log.warning("dead-letter %s from %s[%d]@%d: %s", reason.value, msg.topic, msg.partition,
                msg.offset, detail[:200])
    await sink.send(topics.DEADLETTER.name, out_key, record)
