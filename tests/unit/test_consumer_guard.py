"""The consumer guard (streams/kafka/consumer_guard.py) on Faust's real fetch loop.

`LogConsumer` is Faust's own `Consumer` (fetch loop, read offsets, gaps, acks, commit offsets)
over a one-partition in-memory log instead of a broker. The test replays the interleaving traced
in issue #5: recovery seeks to the committed offset and clears the agent's queue while a fetch
from before the seek is still on its way. Without the guard Faust commits past the cleared
records and never delivers them again; with it every record is processed and the commit point
never passes an unprocessed one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any, cast

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage

from streams.kafka.consumer_guard import GuardedConsumer, guarded

TOPIC = "radiology.work.test.v1"
PART = TP(TOPIC, 0)
END = 40  # the log holds offsets 0..END-1
COMMITTED = 10  # what the group had committed when the worker (re)joined


class LogConsumer(Consumer):
    """Faust's consumer with the broker replaced by a list of offsets and a position."""

    def __init__(self, app: faust.App, batch: int, on_fetch: Any) -> None:
        super().__init__(app.transport, callback=self._deliver,
                         on_partitions_revoked=_nothing, on_partitions_assigned=_nothing)
        self.head = COMMITTED
        self.committed = COMMITTED
        self.batch = batch
        self.fetches = 0
        self.on_fetch = on_fetch
        self.queue: list[Message] = []  # the agent's input queue
        self.agent_busy = True  # until recovery, the agent takes one record and works on it
        self._set_active_tps({PART})

    async def _deliver(self, message: Message) -> None:
        self.queue.append(message)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        self.fetches += 1
        offsets = list(range(self.head, min(self.head + self.batch, END)))
        self.head += len(offsets)
        # The broker round trip: recovery may run meanwhile (the records are already chosen).
        await self.on_fetch(self)
        if not offsets:
            await asyncio.sleep(0.01)
            return {}
        return {PART: offsets}

    def _to_message(self, tp: TP, record: Any) -> ConsumerMessage:
        return ConsumerMessage(TOPIC, 0, record, 0.0, 0, None, b"k", b"v", None, tp=tp,
                               generation_id=self.app.consumer_generation_id)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        self.head = self.committed
        return {PART: self.committed}

    async def _seek(self, partition: TP, offset: int) -> None:
        self.head = offset

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        self.committed = offsets[PART]
        return True

    def assignment(self) -> set[TP]:
        return {PART}

    def highwater(self, tp: TP) -> int:
        return END

    def _new_topicpartition(self, topic: str, partition: int) -> TP:
        return TP(topic, partition)

    # The rest of the interface is not used by the fetch loop.
    async def subscribe(self, topics: Any) -> None: ...
    async def position(self, tp: TP) -> int | None: return self.head
    async def seek_to_beginning(self, *partitions: Any) -> None: ...
    async def seek_wait(self, partitions: Any) -> None: ...
    def topic_partitions(self, topic: str) -> int | None: return 1
    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]: return {PART: 0}
    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]: return {PART: END}
    async def create_topic(self, *args: Any, **kwargs: Any) -> None: ...
    def key_partition(self, topic: str, key: Any, partition: Any = None) -> int | None: return 0
    def close(self) -> None: ...


async def _nothing(*args: Any) -> None: ...


@pytest.fixture
def app() -> Iterator[faust.App]:
    a = faust.App("consumer-guard-test", broker="kafka://127.0.0.1:1", store="memory://")
    cast(Any, a.topics)._acking_topics.add(TOPIC)  # the topic an agent consumes with acks
    yield a


async def _recover(consumer: Consumer) -> None:
    """What Faust's recovery does once its tables are ready (tables/recovery.py)."""
    await consumer.perform_seek()
    consumer.queue.clear()  # type: ignore[attr-defined]  # flow_control.resume() clears queues
    consumer.resume_flow()


async def _run(consumer: LogConsumer) -> tuple[set[int], int]:
    """Drain the log with Faust's fetch loop while an agent processes (acks) what arrives."""
    fetcher = faust.Service()
    processed: set[int] = set()
    drain = asyncio.ensure_future(consumer._drain_messages(fetcher))
    try:
        for _ in range(400):
            while consumer.queue and not (consumer.agent_busy and processed):
                message = consumer.queue.pop(0)
                message.tracked = True  # as a stream does before its agent sees the message
                processed.add(message.offset)
                consumer.ack(message)
            if processed >= set(range(COMMITTED, END)) and consumer.fetches > 5:
                break
            await asyncio.sleep(0.005)
    finally:
        drain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drain
    await consumer.commit()
    return processed, consumer.committed


def _scenario(app: faust.App, consumer_cls: type[LogConsumer]) -> LogConsumer:
    """Records 10..12 are delivered, the agent takes 10; then, while the next fetch (13..15) is
    on its way, recovery seeks back to 10 and clears the queue (11 and 12 with it)."""

    async def on_fetch(consumer: LogConsumer) -> None:
        if consumer.fetches == 2:
            await asyncio.sleep(0.02)  # the agent takes record 10; 11 and 12 wait in the queue
            await _recover(consumer)
            consumer.agent_busy = False

    return consumer_cls(app, batch=3, on_fetch=on_fetch)


def _check(processed: set[int], committed: int) -> None:
    unprocessed = set(range(COMMITTED, END)) - processed
    first_unprocessed = min(unprocessed, default=END)
    assert committed <= first_unprocessed, f"committed {committed} past unprocessed {unprocessed}"
    assert not unprocessed, f"never delivered again: {sorted(unprocessed)}"


@pytest.mark.asyncio
async def test_faust_alone_commits_past_cleared_records(app: faust.App) -> None:
    """The defect itself, so this test notices if a Faust upgrade fixes or changes it."""
    processed, committed = await _run(_scenario(app, LogConsumer))
    with pytest.raises(AssertionError, match=r"past unprocessed \{11, 12\}"):
        _check(processed, committed)


@pytest.mark.asyncio
async def test_guard_delivers_everything_and_commits_only_processed(app: faust.App) -> None:
    processed, committed = await _run(_scenario(app, guarded(LogConsumer)))  # type: ignore[arg-type]
    _check(processed, committed)
    assert committed == END


@pytest.mark.asyncio
async def test_guard_ignores_acks_of_messages_no_stream_took(app: faust.App) -> None:
    consumer = cast(Any, guarded(LogConsumer))(app, batch=3, on_fetch=_nothing)
    assert isinstance(consumer, GuardedConsumer)
    skipped = consumer._to_message(PART, COMMITTED)  # Faust's skip path acks it untracked
    assert not consumer.ack(skipped)
    taken = consumer._to_message(PART, COMMITTED)
    taken.tracked = True
    assert consumer.ack(taken)
    assert consumer._new_offset(PART) == COMMITTED + 1
