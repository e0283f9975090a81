"""Keep Faust from committing past work items that no agent processed after a rebalance.

The defect (issue #5, docs/reliability.md): after kill -9 of a worker or a change in the consumer
group, a few work items had no outcome while the group's committed offset was past them. Traced
in faust-streaming 0.15.3 (`faust/transport/consumer.py`, `faust/tables/recovery.py`):

1. When a rebalance's table recovery completes, Faust resumes the stream partitions, calls
   `Consumer.perform_seek()` (position and `_read_offset` back to the committed offset), and then
   `flow_control.resume()`, which clears every agent's input queue. The fetch loop
   (`_drain_messages`) is not stopped across this: it goes on handing out the rest of a record
   batch fetched *before* the seek.
2. The first such record is ahead of the freshly reset read offset, so the loop records the
   offsets in between as a "gap" (`_add_gap`), and `_new_offset()` counts gap offsets as acked.
3. Those in-between records had been fetched before the seek and were sitting in an agent's queue,
   which the resume cleared: nobody processed them.
4. When the broker re-sends them from the committed offset, the fetch loop drops them as already
   read (`offset < _read_offset`, advanced by the stale batch). The group then commits past them:
   lost, with lag 0 and no error. (The loop's own `_read_offset` write for a record whose hand-off
   straddled the seek is stale in the same way.)

`GuardedConsumer` closes this in our code, by overriding three methods of the consumer class the
transport creates (nothing is patched globally; `install()` subclasses it for our app only):

- `perform_seek` stops the consumer's flow before it seeks, so the fetch loop abandons its batch
  (Faust checks the flow before each record) and fetches nothing until recovery has cleared the
  queues and resumed the flow. Every seek is counted, and the read offsets it set are kept.
- `getmany` never hands out a record from a fetch that overlapped a seek: it drops that batch
  and seeks to the committed offsets again, so the broker re-sends it. Before the first record
  after a seek it puts the seek's read offsets back, undoing the fetch loop's writes for records
  taken before it. What the broker re-sends is then delivered in order, with no gap.
- `ack` ignores an ack for a message no stream ever received: Faust's streams ack, unprocessed,
  any message they skip because it is from an older consumer generation or arrived while flow was
  suspended. Such a message is re-read from the committed offset instead.

Anything delivered twice (before and after a seek) is processed twice: a duplicate, which
consumers can tell, never a loss. Written against faust-streaming 0.15.x;
tests/unit/test_consumer_guard.py replays the interleaving on Faust's real fetch loop and fails
without the guard, so an upgrade that changes these internals is caught.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.transport.consumer import Consumer
from faust.types import TP, Message

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # mypy sees a plain subclass; at run time the base is the transport's class
    _Base = Consumer
else:
    _Base = object


class GuardedConsumer(_Base):
    """Mixed in before the transport's consumer class (see `guarded()`)."""

    #: Bumped when a seek starts and again when it ends, so a fetch that overlapped a seek shows.
    _seek_count: int = 0
    #: (seek count, read offsets) as the last completed seek left them.
    _seek_read_offsets: tuple[int, Mapping[TP, int | None]] = (0, {})
    #: The seek count whose read offsets the fetch loop has had put back.
    _seek_settled: int = 0

    async def perform_seek(self) -> None:
        """Seek to the committed offsets with the fetch loop held still (see module doc)."""
        # Recovery resumes the flow right after this returns (flow_control.resume(), which
        # clears the agents' queues, then consumer.resume_flow()); when the fetch loop itself
        # calls this, the flow is stopped already.
        self.stop_flow()
        await self._seek_to_committed()

    async def _seek_to_committed(self) -> None:
        self._seek_count += 1
        try:
            await super().perform_seek()
        finally:
            self._seek_count += 1
            self._seek_read_offsets = (self._seek_count, dict(self._read_offset))

    def _settle_after_seek(self) -> None:
        """Undo the fetch loop's read-offset writes for records it took before the last seek."""
        count, offsets = self._seek_read_offsets
        if count != self._seek_settled:
            self._seek_settled = count
            self._read_offset.update(offsets)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's batch, minus anything that may have been fetched before a seek."""
        self._settle_after_seek()
        started = self._seek_count
        first = True
        batch = super().getmany(timeout)
        try:
            async for tp, message in batch:
                if first and (started % 2 or self._seek_count != started):
                    # The fetch overlapped a seek: it may hold records from either side of it.
                    # Drop it and seek again, so the broker re-sends from the committed offset.
                    await self._seek_to_committed()
                    return
                first = False
                if self._seek_count != started:
                    return  # a seek after this fetch: the broker re-sends the rest
                yield tp, message
                # Back here once the fetch loop has handed the record on and noted its offset.
                if self._seek_count != started:
                    self._settle_after_seek()
                    return
        finally:
            await cast(Any, batch).aclose()

    def ack(self, message: Message) -> bool:
        """Count an ack only for a message a stream took in."""
        if not message.tracked:
            # Only Faust's skip path acks a message no stream took in (streams track a message
            # before their agent sees it): counting it would commit past unprocessed work.
            return False
        return bool(super().ack(message))


def guarded(consumer_cls: type[Consumer]) -> type[Consumer]:
    """`consumer_cls` with the guard's overrides in front of it."""
    name = f"Guarded{consumer_cls.__name__}"
    return cast(type[Consumer], type(name, (GuardedConsumer, consumer_cls),
                                     {"__module__": __name__, "__qualname__": name}))


def install(app: faust.App) -> None:
    """Make `app`'s transport create guarded consumers; call before the worker starts."""
    if getattr(app, "_consumer", None) is not None:
        raise RuntimeError("consumer_guard.install() must run before the app's consumer exists")
    transport = app.transport
    current = cast(type[Consumer], transport.Consumer)
    if not issubclass(current, GuardedConsumer):
        # An instance attribute: only this app's transport creates guarded consumers.
        vars(transport)["Consumer"] = guarded(current)
    log.debug("consumer guard installed on %s", type(transport).__name__)
