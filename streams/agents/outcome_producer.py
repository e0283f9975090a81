"""The producer agents publish their outcomes with: librdkafka (confluent-kafka), beside Faust's.

Why not Faust's own producer: in a drain, sending the Findings, Latency events and work items
through `Topic.send` and aiokafka took about a fifth of the worker's event loop (py-spy,
docs/performance.md round 6), most of it Python per record: Faust's message wrappers, aiokafka's
batch building, its socket writes. librdkafka does the batching, the protocol and the socket in
its own C threads, outside the GIL; the event loop only hands each record over. Faust's producer
still writes the tables' changelogs, which Faust owns.

Delivery is tracked per batch, not per record: a `Delivery` counts the records handed over and
the broker acknowledgements coming back (librdkafka's delivery callbacks, served by one poll
thread). Its `wait()` returns once every record of the batch is on the broker, or raises the
first error. One cross-thread wake-up per batch, not per record.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

#: Header pairs as confluent-kafka's stubs spell them.
_Headers = list[tuple[str, str | bytes | None]] | None

#: How long the poll thread waits for delivery reports per call (seconds); also how quickly
#: it notices close().
_POLL_S = 0.05
#: Back-off when librdkafka's local queue is full (BufferError) before handing a record over
#: again: the poll thread drains the queue meanwhile.
_FULL_QUEUE_S = 0.005


class Delivery:
    """The broker acknowledgements of one batch of records."""

    __slots__ = ("_error", "_future", "_lock", "_loop", "_pending", "_sealed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending = 0
        self._sealed = False
        self._error: KafkaError | None = None
        self._future: asyncio.Future[None] = loop.create_future()

    def count(self, n: int) -> None:
        """`n` more (or, negative, fewer) records handed over to librdkafka."""
        with self._lock:
            self._pending += n

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        """librdkafka's delivery report for one record (poll thread)."""
        with self._lock:
            self._pending -= 1
            if err is not None and self._error is None:
                self._error = err
            done = self._sealed and self._pending == 0
        if done:
            self._loop.call_soon_threadsafe(self._settle)

    async def wait(self) -> None:
        """Return once every record handed over is on the broker; raise KafkaException with
        the first delivery error otherwise. Call once, after the batch's last produce."""
        with self._lock:
            self._sealed = True
            done = self._pending == 0
        if done:
            self._settle()
        await self._future

    def _settle(self) -> None:
        if self._future.done():
            return
        if self._error is not None:
            self._future.set_exception(KafkaException(self._error))
        else:
            self._future.set_result(None)


class OutcomeProducer:
    """A librdkafka producer with a thread that serves its delivery reports."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="radstream-deliveries",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(_POLL_S)

    async def produce(self, delivery: Delivery, topic: str, key: bytes, value: bytes,
                      headers: list[tuple[str, bytes]] | None) -> None:
        """Hand one record over; its acknowledgement is counted in `delivery`."""
        while True:
            delivery.count(1)
            try:
                self._producer.produce(topic, value=value, key=key,
                                       headers=cast(_Headers, headers),  # list is invariant
                                       on_delivery=delivery.delivered)
                return
            except BufferError:
                delivery.count(-1)
                await asyncio.sleep(_FULL_QUEUE_S)
            except BaseException:
                delivery.count(-1)
                raise

    def close(self, timeout_s: float = 10.0) -> int:
        """Stop serving reports and wait up to `timeout_s` for queued records; returns how
        many were still queued (their batches were never acknowledged, so nothing is lost)."""
        self._closing.set()
        self._thread.join()
        return int(self._producer.flush(timeout_s))


def producer_config(bootstrap: str, client_id: str, linger_s: float,
                    security: dict[str, Any], partitioner: dict[str, str]) -> dict[str, Any]:
    """librdkafka settings for outcome records, matching what the worker's Faust producer
    promises: acknowledged by every in-sync replica, idempotent (a retry neither duplicates
    nor reorders), a few ms of linger so that a batch's records share requests."""
    return {"bootstrap.servers": bootstrap, "client.id": client_id, "acks": "all",
            "enable.idempotence": True, "linger.ms": max(0.0, linger_s * 1000.0),
            **partitioner, **security}
