"""Table writes from micro-batching agents land in the changelog partition of the right event.

Faust sends a table write to the changelog partition of its *current* event. A micro-batch
leaves the batch's last event current, which may belong to another partition than the event a
write is for: the write would then be missed after a rebalance (and a per-partition order of
writes, which exact counting relies on, would break).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import faust
import faust.streams


@contextlib.contextmanager
def current(event: faust.EventT) -> Iterator[None]:
    """Make `event` Faust's current event while the block's table writes happen."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)
