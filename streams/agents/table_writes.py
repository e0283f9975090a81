"""Table writes from micro-batching agents land in the changelog partition of the right event;
expired entries are deleted the same way.

Faust sends a table write to the changelog partition of its *current* event. A micro-batch
leaves the batch's last event current, which may belong to another partition than the event a
write is for: the write would then be missed after a rebalance (and a per-partition order of
writes, which exact counting relies on, would break).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import ItemsView, Iterator
from typing import Any, Protocol

import faust
import faust.streams

from streams.rules.horizon import Horizon

log = logging.getLogger(__name__)


class Table(Protocol):
    """What agents need of a table: a Faust Table in the worker, a named dict in unit tests."""

    name: str

    def get(self, key: Any, /) -> Any: ...

    def items(self) -> ItemsView[Any, Any]: ...

    def __setitem__(self, key: Any, value: Any) -> None: ...

    def __delitem__(self, key: Any) -> None: ...


@contextlib.contextmanager
def current(event: faust.EventT) -> Iterator[None]:
    """Make `event` Faust's current event while the block's table writes happen."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def write_stamped(table: Table, horizon: Horizon, key: Any, value: Any) -> None:
    """`table[key] = value`, and the write noted in `horizon`'s index when `value` is stamped,
    so it is forgotten without a scan. Callers make the right event current."""
    table[key] = value
    horizon.written(key, value)


def forget_expired(table: Table, horizon: Horizon,
                   event: faust.EventT) -> list[tuple[Any, dict[str, Any]]]:
    """Advance `horizon` with `event` (the last one read from its partition); when a scan is
    due, queue the partition's entries older than the horizon; then delete up to
    `horizon.per_call` expired entries (queued or indexed, see Horizon.take) with `event`
    current, so the tombstones follow the entries' own writes on the same changelog partition.

    Returns the (key, entry) pairs deleted. Never raises: a sweep that fails is logged, and the
    entries it left are deleted by a later one.
    """
    partition = event.message.partition
    due = horizon.observe(partition, event.message.timestamp)
    try:
        if due and not horizon.queued(partition):
            found = horizon.queue(partition, table.items())
            if found:
                log.info("%s: %d entries of partition %d are older than the %.0f s horizon",
                         table.name, found, partition, horizon.horizon_s)
        expired = horizon.take(partition, table.get)
        with current(event):
            for key, _ in expired:
                del table[key]
    except Exception:
        log.exception("%s: could not forget expired entries of partition %d", table.name,
                      partition)
        return []
    return expired
