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
from collections.abc import Iterator
from typing import Any

import faust
import faust.streams
from faust.types import TableT

from streams.horizon import Horizon

log = logging.getLogger(__name__)


@contextlib.contextmanager
def current(event: faust.EventT) -> Iterator[None]:
    """Make `event` Faust's current event while the block's table writes happen."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def forget_expired(table: TableT, horizon: Horizon,
                   event: faust.EventT) -> list[tuple[Any, dict[str, Any]]]:
    """Advance `horizon` with `event` (the last one read from its partition) and, when a sweep
    is due, delete the entries of that partition older than the horizon, with `event` current:
    the tombstones follow the entries' own writes on the same changelog partition.

    Returns the (key, entry) pairs deleted. Never raises: a sweep that fails is logged, and the
    entries it left are deleted by the next one.
    """
    partition = event.message.partition
    if not horizon.observe(partition, event.message.timestamp):
        return []
    try:
        expired = horizon.expired(partition, table.items())
        with current(event):
            for key, _ in expired:
                del table[key]
    except Exception:
        log.exception("%s: could not forget expired entries of partition %d", table.name,
                      partition)
        return []
    if expired:
        log.info("%s: forgot %d entries older than the %.0f s horizon", table.name,
                 len(expired), horizon.horizon_s)
    return expired
