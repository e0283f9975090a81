"""Exact-once table writes of the city statistics (pure logic): the writes that apply one event,
or a micro-batch, to the statistics tables so that every count lands exactly once.

Exactness under crashes and redelivery
--------------------------------------
Faust writes table changes to a changelog topic and commits input offsets separately, so a worker
killed between the two redelivers events whose table writes are already durable. Counting them
again would double-count. We make every table write idempotent per input offset instead:

1. One Faust table per source topic (findings, latency, dead letters). Every key written while
   processing an event from partition p goes to changelog partition p (Faust uses the event's
   partition), so a partition's writes are totally ordered and a crash leaves a *prefix* of them.
2. A stats cell key carries the source partition: `c|<partition>|<stats key>`, and the cell stores
   its payload together with `o`, the offset of the last event applied to it. An event at offset
   o is applied to a cell only if o > cell.o: a redelivered event re-applies exactly the cells
   whose write did not survive the crash.
3. After its cells, the event writes its `seen` entry (`s|...`) in the same table, hence the same
   changelog partition: if `seen` is durable, all the event's cells are too. A finding whose
   identity is already seen (the same finding again at a new offset: a replay, a duplicate
   publish) is skipped entirely; one not yet seen always (re)writes `seen` after the offset-guarded
   cells, which repairs a crash between the cells and `seen`.
4. Faust flushes the producer (changelog) before it commits offsets, so everything before the
   committed offset is durable; what comes after is replayed against the recovered table, where
   steps 2 and 3 make the replay land exactly once.
The API and the snapshots sum a stats key's cells over partitions.

Counting rules: a Finding is counted once per identity (study, service, model version). For
findings the seen entry is per study (`s|<study_uid>`, a study's findings share its partition by
the record key) and holds the identities counted and the stats keys already credited with the
study (as 64-bit digests), so `studies` = distinct studies with at least one counted finding in
that window and dimension value. Latency events are counted once per (study, service, model
version) too, dead letters once per origin (topic, partition, offset).

Seen entries are forgotten after the dedup horizon (streams/rules/horizon.py,
RADSTREAM_DEDUP_HORIZON_S, a day by default): a copy of a Finding published more than a horizon
after the first is counted again, and a study whose next service reports more than a horizon
later counts again in `studies`. Cells (the statistics themselves) are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.analytics.counting import (
    add_counts,
    add_latency,
    dimensions,
    event_time,
    finding_contributions,
    finding_identity,
    fold_latency,
    latency_identity,
    own_latency,
)
from streams.analytics.stats_keys import CELL_PREFIX, CITY, Dimension, cell_key, stats_key
from streams.analytics.windows import labels
from streams.rules.horizon import stamp

Get = Callable[[str], Any]


@dataclass
class Plan:
    """The table writes for one event, in the order they must be made (cells, then seen)."""

    writes: list[tuple[str, Any]] = field(default_factory=list)
    #: Stats keys whose cells change (for the snapshot publisher).
    touched: list[str] = field(default_factory=list)
    #: True when the event's identity was counted before (nothing to write).
    duplicate: bool = False


def _cells(get: Get, partition: int, offset: int,
           updates: Iterable[tuple[str, Callable[[Any], Any]]], plan: Plan) -> None:
    for key, update in updates:
        ckey = cell_key(partition, key)
        cell = get(ckey)
        if cell is not None and offset <= cell["o"]:
            continue  # applied before a crash; its write is durable
        plan.writes.append((ckey, {"o": offset, "v": update(cell["v"] if cell else None)}))
        plan.touched.append(key)


#: Hex characters of a credited stats key's digest in a seen record (64 bits: a collision
#: within one study's few dozen keys is out of reach).
CREDIT_HEX = 16


def credit_digest(key: str) -> str:
    """A stats key as the seen record remembers it: a fixed-size digest, a fraction of the key's
    memory (the record lives for the dedup horizon in every worker holding its partition)."""
    return hashlib.blake2b(key.encode(), digest_size=CREDIT_HEX // 2).hexdigest()


def _credits(record: Mapping[str, Any]) -> str:
    """The digests of the stats keys a study already counts in, concatenated; `c` is the record
    format before digests (full keys), still read so that a changelog written by an older worker
    counts on."""
    return record.get("k", "") + "".join(credit_digest(key) for key in record.get("c", ()))


def plan_finding(get: Get, partition: int, offset: int, finding: Mapping[str, Any]) -> Plan:
    """Writes that count `finding` (read at `offset` of `partition`) exactly once."""
    seen_key = f"s|{finding['study_uid']}"
    record = get(seen_key) or {"f": [], "k": ""}
    identity = finding_identity(finding)
    if identity in record["f"]:
        return Plan(duplicate=True)
    old = _credits(record)
    credited = {old[i:i + CREDIT_HEX] for i in range(0, len(old), CREDIT_HEX)}
    new_credits: list[str] = []
    updates: list[tuple[str, Callable[[Any], Any]]] = []
    for key, delta in finding_contributions(finding):
        digest = credit_digest(key)
        if digest not in credited:
            delta["studies"] = 1
            credited.add(digest)
            new_credits.append(digest)
        updates.append((key, partial(add_counts, delta=delta)))
    plan = Plan()
    _cells(get, partition, offset, updates, plan)
    plan.writes.append((seen_key, {"f": [*record["f"], identity],
                                   "k": old + "".join(new_credits)}))
    return plan


def plan_latency(get: Get, partition: int, offset: int, event: Mapping[str, Any]) -> Plan:
    seen_key = f"s|{latency_identity(event)}"
    if get(seen_key) is not None:
        return Plan(duplicate=True)
    updates = [(stats_key(w, lab, dim, value), lambda v: add_latency(v, event))
               for w, lab in labels(event_time(event)) for dim, value in dimensions(event)]
    plan = Plan()
    _cells(get, partition, offset, updates, plan)
    plan.writes.append((seen_key, {}))
    return plan


def plan_latency_batch(get: Get,
                       events: list[tuple[int, int, Mapping[str, Any]]]) -> Plan:
    """plan_batch(get, plan_latency, events), unstamped, with each cell's sketches copied once
    per batch rather than once per event: a cell holds seven sketches of up to a few hundred
    buckets, and the city, service, hospital and total cells are shared by most of a batch.

    Same rules as event by event: an event whose identity is seen (before, or earlier in the
    batch) is skipped; an event folds into a cell only if its offset is past the cell's `o`
    in the table (later events of one partition's batch have larger offsets).
    """
    seen: dict[str, Any] = {}
    folds: dict[str, tuple[str, list[tuple[int, Mapping[str, Any]]]]] = {}
    for partition, offset, event in events:
        seen_key = f"s|{latency_identity(event)}"
        if seen_key in seen or get(seen_key) is not None:
            continue
        for w, lab in labels(event_time(event)):
            for dim, value in dimensions(event):
                key = stats_key(w, lab, dim, value)
                folds.setdefault(cell_key(partition, key), (key, []))[1].append((offset, event))
        seen[seen_key] = {}
    plan = Plan()
    for ckey, (key, items) in folds.items():
        cell = get(ckey)
        if cell is not None:
            items = [(offset, event) for offset, event in items if offset > cell["o"]]
            if not items:
                continue  # applied before a crash; its write is durable
        payload = own_latency(cell["v"] if cell else None)
        for _, event in items:
            fold_latency(payload, event)
        plan.writes.append((ckey, {"o": items[-1][0], "v": payload}))
        plan.touched.append(key)
    plan.writes.extend(seen.items())
    return plan


def plan_deadletter(get: Get, partition: int, offset: int, record: Mapping[str, Any]) -> Plan:
    """Dead letters count per window for the city and, when they name one, the service."""
    origin = record["origin"]
    seen_key = f"s|{origin['topic']}|{origin['partition']}|{origin['offset']}"
    if get(seen_key) is not None:
        return Plan(duplicate=True)
    dims: list[tuple[Dimension, str]] = [("city", CITY)]
    if record.get("service"):
        dims.append(("service", record["service"]))
    updates = [(stats_key(w, lab, dim, value), lambda v: add_counts(v, {"deadletters": 1}))
               for w, lab in labels(event_time(record)) for dim, value in dims]
    plan = Plan()
    _cells(get, partition, offset, updates, plan)
    plan.writes.append((seen_key, {}))
    return plan


Planner = Callable[[Get, int, int, Mapping[str, Any]], Plan]


def plan_batch(get: Get, planner: Planner,
               events: Iterable[tuple[int, int, Mapping[str, Any]]],
               timestamp: float | None = None) -> Plan:
    """One Plan for a micro-batch of (partition, offset, event) from *one* partition.

    With `timestamp` (the batch's last Kafka timestamp), seen entries are stamped with it and
    the partition, so the dedup horizon can forget them (streams/rules/horizon.py).

    Each event is planned against the table as the batch's earlier events left it, then every
    key is written once, with its last value: cells first, seen entries after them. That keeps
    the rules of the module docstring. A coalesced cell carries the offset of the last event
    folded into it, so after a crash a replayed event skips exactly the cells that already hold
    it; and every seen entry still follows all of its event's cells in the changelog. With the
    city, service and total cells shared by most of a batch, this divides the changelog writes
    (and their serialisation) by up to the batch size.
    """
    events = list(events)
    if planner is plan_latency:  # the same plan, without a sketch copy per event
        batch = plan_latency_batch(get, events)
        return _stamped(batch, events[-1][0], timestamp) if events else batch
    overlay: dict[str, Any] = {}

    def view(key: str) -> Any:
        return overlay[key] if key in overlay else get(key)

    cells: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    touched: dict[str, None] = {}
    for partition, offset, event in events:
        plan = planner(view, partition, offset, event)
        for key, value in plan.writes:
            overlay[key] = value
            (cells if key.startswith(CELL_PREFIX) else seen)[key] = value
        touched.update(dict.fromkeys(plan.touched))
    batch = Plan(writes=[*cells.items(), *seen.items()], touched=list(touched))
    return _stamped(batch, events[-1][0], timestamp) if events else batch


def _stamped(plan: Plan, partition: int, timestamp: float | None) -> Plan:
    """`plan` with its seen entries stamped for the dedup horizon (cells are never forgotten)."""
    if timestamp is not None:
        plan.writes = [(key, value if key.startswith(CELL_PREFIX)
                        else stamp(value, partition, timestamp)) for key, value in plan.writes]
    return plan
