"""Forgetting per-study state once it is older than a horizon of event time (pure logic).

Exact-once counting (streams/stats.py), the router's duplicate check and the quality join keep
one table entry per study. Kept for good they grow with every study: about 4 KB each in a
worker's memory, 36 GB for the city's 9 million. So each such entry is *stamped* with the Kafka
timestamp `t` of the event that wrote it and the source partition `p` it was written for. Once
the partition's event time (the largest record timestamp read from it) is more than the horizon
past `t`, the agent deletes the entry, with the partition's event current, so the tombstone
follows the entry's own writes on the same changelog partition (and recovery replays both).

Event time, not the wall clock: a worker that was down for an hour resumes with the entries it
had, and forgets them only as the backlog it reads moves past them. What the horizon means for
each table is in its agent's documentation; in short, two copies of one event published more
than a horizon apart are no longer recognised as copies.

Entries without a stamp (written before stamping existed, or by a test that writes planner
output directly) are never deleted: without `p` the right changelog partition is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Keys of the stamp inside a stamped entry.
STAMP_TIME = "t"
STAMP_PARTITION = "p"


def stamp(value: Mapping[str, Any], partition: int, timestamp: float) -> dict[str, Any]:
    """`value` with the stamp of the event (its partition and Kafka timestamp) that wrote it."""
    return {**value, STAMP_TIME: int(timestamp), STAMP_PARTITION: partition}


class Horizon:
    """Event time per partition, and which stamped entries it has left behind.

    `observe` is called with each event (or each batch's last event) read from a partition; when
    it answers True, the caller deletes the keys `expired` returns for that partition. A sweep
    scans the whole table, so it runs once per quarter horizon of event time per partition.
    """

    def __init__(self, horizon_s: float) -> None:
        if not horizon_s > 0:
            raise ValueError(f"a horizon must be positive, not {horizon_s!r}")
        self.horizon_s = float(horizon_s)
        self.sweep_every_s = self.horizon_s / 4
        self._clock: dict[int, float] = {}
        self._next_sweep: dict[int, float] = {}

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
        clock = self._clock.get(partition)
        if clock is None:
            return []
        cutoff = clock - self.horizon_s
        return [(key, value) for key, value in items
                if isinstance(value, dict) and value.get(STAMP_PARTITION) == partition
                and value.get(STAMP_TIME, math.inf) < cutoff]
