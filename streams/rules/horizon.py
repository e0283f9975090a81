"""Forgetting per-study state once it is older than a horizon of event time (pure logic).

Exact-once counting (streams/analytics/exact_once.py), the router's duplicate check and the quality
join keep one table entry per study. Kept for good they grow with every study: about 4 KB each in a
worker's memory, 36 GB for the city's 9 million. So each such entry is *stamped* with the Kafka
timestamp `t` of the event that wrote it and the source partition `p` it was written for. Once the
partition's event time (the largest record timestamp read from it) is more than the horizon past
`t`, the agent deletes the entry, with the partition's event current, so the tombstone follows the
entry's own writes on the same changelog partition (and recovery replays both).

Event time, not the wall clock: a worker that was down for an hour resumes with the entries it
had, and forgets them only as the backlog it reads moves past them. What the horizon means for
each table is in its agent's documentation; in short, two copies of one event published more
than a horizon apart are no longer recognised as copies.

Entries without a stamp (written before stamping existed, or by a test that writes planner
output directly) are never deleted: without `p` the right changelog partition is unknown.

Forgetting is continuous and spread out. Each stamped write is also noted in a per-partition
index, in write order, so an entry is deleted by the batch that moves event time a horizon past
it: each batch forgets about as much as it wrote a horizon ago, and no scan is needed for it.
Entries this worker did not write (recovered from the changelog at start or after a rebalance)
are not in the index; a scan of the table every quarter horizon of event time finds those.
Each call deletes at most `per_call` entries (every tombstone is a changelog record): event
time can jump after a quiet night or a drained backlog, and deleting tens of thousands of
entries at once would stall the event loop for seconds, which every study in flight would wait
out. `per_call` is larger than what one micro-batch writes, so forgetting keeps up. The index
costs about 64 bytes per entry.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Keys of the stamp inside a stamped entry.
STAMP_TIME = "t"
STAMP_PARTITION = "p"


def stamp(value: Mapping[str, Any], partition: int, timestamp: float) -> dict[str, Any]:
    """`value` with the stamp of the event (its partition and Kafka timestamp) that wrote it."""
    return {**value, STAMP_TIME: int(timestamp), STAMP_PARTITION: partition}


class Horizon:
    """Event time per partition, and which stamped entries it has left behind.

    The caller reports each stamped write with `written`, and with each event (or each batch's
    last event) read from a partition calls `observe`; when that answers True it also `queue`s
    the partition's expired entries found by scanning the whole table (once per quarter horizon
    of event time per partition). Then it deletes what `take` hands out.
    """

    def __init__(self, horizon_s: float, *, per_call: int = 128) -> None:
        if not horizon_s > 0:
            raise ValueError(f"a horizon must be positive, not {horizon_s!r}")
        if per_call < 1:
            raise ValueError(f"per_call must be at least 1, not {per_call!r}")
        self.horizon_s = float(horizon_s)
        self.sweep_every_s = self.horizon_s / 4
        self.per_call = per_call
        self._clock: dict[int, float] = {}
        self._next_sweep: dict[int, float] = {}
        self._queued: dict[int, deque[Any]] = {}
        self._written: dict[int, deque[tuple[int, Any]]] = {}

    def clock(self, partition: int) -> float | None:
        """The partition's event time (seconds since the epoch), None before its first event."""
        return self._clock.get(partition)

    def observe(self, partition: int, timestamp: float) -> bool:
        """Advance the partition's event time; True when its entries are due for a sweep."""
        clock = max(self._clock.get(partition, -math.inf), timestamp)
        self._clock[partition] = clock
        due = self._next_sweep.setdefault(partition, clock + self.sweep_every_s)
        if clock < due:
            return False
        self._next_sweep[partition] = clock + self.sweep_every_s
        return True

    def expired(self, partition: int,
                items: Iterable[tuple[Any, Any]]) -> list[tuple[Any, dict[str, Any]]]:
        """(key, entry) of the entries stamped for `partition` more than a horizon before its
        event time. A list, not a generator: the caller deletes from the table it scanned."""
        return [(key, value) for key, value in items if self.is_expired(partition, value)]

    def is_expired(self, partition: int, value: Any) -> bool:
        """Whether `value` is an entry stamped for `partition` more than a horizon ago."""
        clock = self._clock.get(partition)
        return (clock is not None and isinstance(value, dict)
                and value.get(STAMP_PARTITION) == partition
                and value.get(STAMP_TIME, math.inf) < clock - self.horizon_s)

    def written(self, key: Any, value: Any) -> None:
        """Note a table write; a stamped entry is indexed so that `take` finds it when it
        expires. Unstamped values (statistics cells) are ignored."""
        if isinstance(value, dict) and STAMP_TIME in value and STAMP_PARTITION in value:
            self._written.setdefault(value[STAMP_PARTITION], deque()).append(
                (value[STAMP_TIME], key))

    def indexed(self, partition: int) -> int:
        """How many writes of `partition` the index still holds."""
        return len(self._written.get(partition, ()))

    def queued(self, partition: int) -> int:
        """How many keys of `partition` wait for deletion."""
        return len(self._queued.get(partition, ()))

    def queue(self, partition: int, items: Iterable[tuple[Any, Any]]) -> int:
        """Queue the keys of the partition's expired entries for `take`; returns how many."""
        keys = deque(key for key, _ in self.expired(partition, items))
        self._queued[partition] = keys
        return len(keys)

    def take(self, partition: int,
             get: Callable[[Any], Any]) -> list[tuple[Any, dict[str, Any]]]:
        """Up to `per_call` (key, entry) pairs of `partition` to delete now: first what a scan
        queued, then the indexed writes now older than the horizon, oldest first.

        Each entry is read again through `get`: one rewritten since carries a newer stamp and
        stays (its newer write is indexed too), one already gone is skipped.
        """
        due: dict[Any, dict[str, Any]] = {}  # a key both queued and indexed goes once
        queued = self._queued.get(partition)
        while queued and len(due) < self.per_call:
            key = queued.popleft()
            value = get(key)
            if self.is_expired(partition, value):
                due[key] = value
        written = self._written.get(partition)
        clock = self._clock.get(partition)
        if not written or clock is None:
            return list(due.items())
        cutoff = clock - self.horizon_s
        while written and len(due) < self.per_call and written[0][0] < cutoff:
            stamped_at, key = written.popleft()
            value = get(key)
            if isinstance(value, dict) and value.get(STAMP_TIME) == stamped_at \
                    and self.is_expired(partition, value):
                due[key] = value
        return list(due.items())
