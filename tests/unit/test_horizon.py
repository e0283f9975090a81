"""Forgetting per-study state after a horizon of event time (streams/rules/horizon.py), and what the
stats counting rules do with it: copies within the horizon count once, a copy after it counts
again, statistics cells are never forgotten."""

from __future__ import annotations

from typing import Any

import pytest

from streams.analytics.exact_once import plan_batch, plan_finding, plan_latency
from streams.analytics.rollups import aggregate
from streams.analytics.stats_keys import CELL_PREFIX
from streams.rules.horizon import Horizon, stamp

from .test_stats import finding, latency

T = 1_800_000_000.0  # a Kafka timestamp, seconds


def test_sweeps_are_due_every_quarter_horizon_of_each_partitions_event_time() -> None:
    h = Horizon(100)
    assert not h.observe(0, T)
    assert not h.observe(0, T + 24)
    assert h.observe(0, T + 25)
    assert not h.observe(0, T + 49)
    assert h.observe(0, T + 50)
    # Another partition has its own clock: partition 0's progress does not make it due.
    assert not h.observe(1, T + 10)
    assert h.clock(1) == T + 10 and h.clock(0) == T + 50
    # Event time never goes back: an older record does not move the clock.
    assert not h.observe(0, T)
    assert h.clock(0) == T + 50


def test_only_stamped_entries_of_the_partition_older_than_the_horizon_expire() -> None:
    h = Horizon(100)
    items: dict[str, Any] = {
        "old": stamp({"f": "x"}, 0, T),
        "edge": stamp({}, 0, T + 100),          # exactly a horizon old: kept
        "young": stamp({}, 0, T + 150),
        "other-partition": stamp({}, 1, T),
        "unstamped": {"f": "x"},                # written before stamping: partition unknown
        "legacy-scalar": 1,
        f"{CELL_PREFIX}0|total|total|city|city": {"o": 3, "v": {"findings": 1}},
    }
    assert h.expired(0, items.items()) == []    # no event time yet on partition 0
    h.observe(0, T + 200)
    assert h.expired(0, items.items()) == [("old", items["old"])]
    h.observe(0, T + 200.5)
    assert [k for k, _ in h.expired(0, items.items())] == ["old", "edge"]


def test_a_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Horizon(0)


class Table(dict[str, Any]):
    """A table with a Horizon sweep after each batch, as the aggregate agent runs it."""

    def __init__(self, horizon_s: float) -> None:
        super().__init__()
        self.horizon = Horizon(horizon_s)

    def batch(self, planner: Any, partition: int, first_offset: int, timestamp: float,
              events: list[dict[str, Any]]) -> None:
        batch = [(partition, first_offset + i, e) for i, e in enumerate(events)]
        for key, value in plan_batch(self.get, planner, batch, timestamp=timestamp).writes:
            self[key] = value
            self.horizon.written(key, value)
        if self.horizon.observe(partition, timestamp):
            self.horizon.queue(partition, list(self.items()))
        for key, _ in self.horizon.take(partition, self.get):
            del self[key]


def _findings(table: Table) -> int:
    got = aggregate(table.items())
    return got["total|total|city|city"].counts["findings"]


def test_a_copy_within_the_horizon_counts_once_and_a_copy_after_it_again() -> None:
    table = Table(horizon_s=60)
    f = finding("1.1")
    table.batch(plan_finding, 0, 0, T, [f])
    table.batch(plan_finding, 0, 1, T + 50, [f])              # a redelivered copy: skipped
    assert _findings(table) == 1
    seen = table["s|1.1"]
    assert seen["p"] == 0 and seen["t"] == int(T)
    # Other studies move partition 0's event time past the horizon: the seen entry goes.
    table.batch(plan_finding, 0, 2, T + 61, [finding("1.2")])
    table.batch(plan_finding, 0, 3, T + 76, [finding("1.3")])
    assert "s|1.1" not in table and "s|1.2" in table
    table.batch(plan_finding, 0, 4, T + 80, [f])              # a copy after the horizon
    assert _findings(table) == 4
    # The statistics themselves are never forgotten.
    assert all(k in table for k in (f"{CELL_PREFIX}0|total|total|city|city",))


def test_latency_seen_entries_are_stamped_and_expire_per_partition() -> None:
    table = Table(horizon_s=10)
    table.batch(plan_latency, 0, 0, T, [latency("2.1")])
    table.batch(plan_latency, 1, 0, T, [latency("2.2")])
    table.batch(plan_latency, 0, 1, T + 20, [latency("2.3")])
    seen = sorted(k for k in table if not k.startswith(CELL_PREFIX))
    # Partition 1's clock has not moved: its entry stays however far partition 0 has gone.
    assert seen == ["s|2.2|chest-xray|", "s|2.3|chest-xray|"]


def test_a_seen_record_in_the_older_full_key_format_still_credits_its_study() -> None:
    """Records written before digests hold the credited stats keys in full (`c`); a study's
    next service must not count the study again in those cells."""
    from streams.analytics.counting import finding_contributions

    first = finding("3.1", service="chest-xray")
    legacy = {"f": ["3.1|chest-xray|1"], "c": [k for k, _ in finding_contributions(first)]}
    table: dict[str, Any] = {"s|3.1": legacy}
    plan = plan_finding(table.get, 0, 7, finding("3.1", service="chest-ct"))
    deltas = {k[len(CELL_PREFIX) + 2:]: v["v"] for k, v in plan.writes if k.startswith(CELL_PREFIX)}
    assert "studies" not in deltas["total|total|city|city"]
    assert deltas["total|total|service|chest-ct"]["studies"] == 1
    assert plan.writes[-1][1]["f"] == ["3.1|chest-xray|1", "3.1|chest-ct|1"]


def test_a_large_expiry_is_handed_out_a_bounded_number_of_keys_at_a_time() -> None:
    """After event time jumps (a quiet night, a drained backlog), one scan finds many expired
    entries; deleting them all at once would stall the event loop, so `take` hands out at most
    `per_call` per batch until the queue is empty."""
    h = Horizon(100, per_call=3)
    table: dict[str, Any] = {f"s|{i}": stamp({}, 0, T + i) for i in range(8)}
    table["young"] = stamp({}, 0, T + 500)
    table["other-partition"] = stamp({}, 1, T)
    h.observe(0, T + 500)
    assert h.queue(0, table.items()) == 8 and h.queued(0) == 8
    # s|1 is rewritten after the scan (a second service's Finding): its new stamp keeps it.
    table["s|1"] = stamp({}, 0, T + 450)
    del table["s|2"]                                   # and s|2 is gone already
    handed: list[list[str]] = []
    while h.queued(0):
        got = h.take(0, table.get)
        assert len(got) <= 3
        handed.append([k for k, _ in got])
        for key, _ in got:
            del table[key]
    assert handed == [["s|0", "s|3", "s|4"], ["s|5", "s|6", "s|7"]]
    assert sorted(table) == ["other-partition", "s|1", "young"]
    assert h.take(0, table.get) == [] and h.take(1, table.get) == []


def test_per_call_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_call"):
        Horizon(10, per_call=0)


def test_indexed_writes_expire_continuously_without_a_scan() -> None:
    """What this worker wrote is forgotten by the batch that moves event time a horizon past
    it, a few entries per batch, not in bursts at each quarter-horizon scan."""
    h = Horizon(100)
    table: dict[str, Any] = {}

    def write(key: str, partition: int, t: float) -> None:
        table[key] = stamp({}, partition, t)
        h.written(key, table[key])

    for i in range(10):
        write(f"s|{i}", 0, T + i)
    write("s|other", 1, T)
    write(f"{CELL_PREFIX}cell", 0, T)                   # unstamped: not indexed
    table[f"{CELL_PREFIX}cell"] = {"o": 1, "v": {}}
    h.written(f"{CELL_PREFIX}cell", table[f"{CELL_PREFIX}cell"])
    write("s|3", 0, T + 50)                             # rewritten later: a newer stamp
    assert h.indexed(0) == 12
    h.observe(0, T + 104.5)                             # not a scan: a quarter horizon is 25 s
    assert h.queued(0) == 0
    assert [k for k, _ in h.take(0, table.get)] == ["s|0", "s|1", "s|2", "s|4"]
    assert h.take(1, table.get) == []                   # partition 1's clock has not moved
    for key in ("s|0", "s|1", "s|2", "s|4"):
        del table[key]
    h.observe(0, T + 151)
    assert [k for k, _ in h.take(0, table.get)] == ["s|5", "s|6", "s|7", "s|8", "s|9", "s|3"]
    assert h.indexed(0) == 0


def test_entries_recovered_from_the_changelog_are_found_by_the_scan() -> None:
    h = Horizon(100)
    recovered = {"s|old": stamp({}, 0, T), "s|young": stamp({}, 0, T + 90)}
    assert not h.observe(0, T + 110)                    # first event: no scan due yet
    assert h.take(0, recovered.get) == []               # not indexed: nothing to hand out
    assert h.observe(0, T + 135)
    assert h.queue(0, recovered.items()) == 1
    assert h.take(0, recovered.get) == [("s|old", recovered["s|old"])]
