"""City statistics (pure logic): windows × dimensions, counting rules, exact-once table writes,
and the rows the stats API and the snapshot topic serve.

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
RADSTREAM_DEDUP_HORIZON_S,
a day by default): a copy of a Finding published more than a horizon after the first is counted
again, and a study whose next service reports more than a horizon later counts again in
`studies`. Cells (the statistics themselves) are kept.

Keys: a stats key is `<window>|<window label>|<dimension>|<value>`, e.g.
`hour|2024-05-14T09|hospital|gkb-67`, `week|2024-W20|city|city`, `total|total|service|chest-xray`
(window labels: streams.analytics.windows). It is also the record key on radiology.stats.v1.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain
from typing import Any, Literal, cast, get_args

from streams.analytics.sketch import LogSketch
from streams.analytics.windows import WINDOWS, Window, labels, rfc3339, start
from streams.contract.cloudevents import parse_rfc3339
from streams.contract.events import STAGES
from streams.rules.horizon import stamp

Dimension = Literal["city", "hospital", "device", "service", "finding"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
#: The value of the city dimension (there is one city).
CITY = "city"

COUNTERS = ("studies", "findings", "ok", "positives", "technical_defect", "not_applicable",
            "deadletters")
#: Quantiles the API and the snapshots report.
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}

#: Dimension values as the schemas allow them (hospital, device, service ids, finding codes).
VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

Get = Callable[[str], Any]
Cells = Iterable[tuple[str, Any]]


# --- keys ----------------------------------------------------------------------------------

def stats_key(window: Window, window_label: str, dimension: Dimension, value: str) -> str:
    return f"{window}|{window_label}|{dimension}|{value}"


@dataclass(frozen=True)
class StatsKey:
    window: Window
    label: str
    dimension: Dimension
    value: str

    @classmethod
    def parse(cls, key: str) -> StatsKey:
        window, window_label, dimension, value = key.split("|", 3)
        if window not in WINDOWS or dimension not in DIMENSIONS:
            raise ValueError(f"not a stats key: {key!r}")
        return cls(cast(Window, window), window_label, cast(Dimension, dimension), value)

    @property
    def start(self) -> datetime | None:
        return start(self.window, self.label)


#: Table keys of stats cells start with this; every other key is a seen entry.
CELL_PREFIX = "c|"


def cell_key(partition: int, key: str) -> str:
    return f"{CELL_PREFIX}{partition}|{key}"


def split_cell_key(key: str) -> tuple[int, str] | None:
    """(partition, stats key) of a cell key; None for other table keys (seen entries)."""
    if not key.startswith(CELL_PREFIX):
        return None
    _, partition, rest = key.split("|", 2)
    return int(partition), rest


# --- identities and counting rules ---------------------------------------------------------

def finding_identity(finding: Mapping[str, Any]) -> str:
    model = finding.get("model") or {}
    return f"{finding['study_uid']}|{finding['service']}|{model.get('version', '')}"


def is_positive(finding: Mapping[str, Any]) -> bool:
    return finding["status"] == "ok" and any(f.get("positive") for f in finding["findings"])


def _dimensions(event: Mapping[str, Any]) -> list[tuple[Dimension, str]]:
    dims: list[tuple[Dimension, str]] = [(
        "city", CITY), ("hospital", event["hospital_id"])]
    if event.get("device_id"):
        dims.append(("device", event["device_id"]))
    dims.append(("service", event["service"]))
    return dims


def _event_time(event: Mapping[str, Any]) -> datetime:
    return parse_rfc3339(str(event["produced_at"]))


def finding_contributions(finding: Mapping[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """(stats key, counter increments) for one Finding, `studies` not included (that depends on
    what was counted before, see `plan_finding`)."""
    status = finding["status"]
    base = {"findings": 1, status: 1}
    if is_positive(finding):
        base["positives"] = 1
    out: list[tuple[str, dict[str, int]]] = []
    for window, window_label in labels(_event_time(finding)):
        for dimension, value in _dimensions(finding):
            out.append((stats_key(window, window_label, dimension, value), dict(base)))
        for item in finding["findings"] if status == "ok" else ():
            delta = {"findings": 1, "ok": 1}
            if item.get("positive"):
                delta["positives"] = 1
            out.append((stats_key(window, window_label, "finding", item["code"]), delta))
    return out


def add_counts(counts: Mapping[str, int] | None, delta: Mapping[str, int]) -> dict[str, int]:
    out = dict(counts or {})
    for k, v in delta.items():
        out[k] = out.get(k, 0) + v
    return out


# --- exact-once writes ---------------------------------------------------------------------

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


def latency_identity(event: Mapping[str, Any]) -> str:
    model = event.get("model") or {}
    return f"{event['study_uid']}|{event['service']}|{model.get('version', '')}"


def add_latency(value: Mapping[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any]:
    """A latency cell's payload after one Latency event: sketches of end-to-end time, each
    stage, and time to result (acquisition to result) by priority."""
    payload = own_latency(value)
    fold_latency(payload, event)
    return payload


def own_latency(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of a latency cell's payload that shares nothing with `value`, to fold into."""
    value = value or {}
    out: dict[str, Any] = {}
    if value.get("e"):
        out["e"] = LogSketch.json_copy(value["e"])
    out["s"] = {k: LogSketch.json_copy(v) for k, v in value.get("s", {}).items()}
    out["p"] = {k: LogSketch.json_copy(v) for k, v in value.get("p", {}).items()}
    return out


def fold_latency(payload: dict[str, Any], event: Mapping[str, Any]) -> None:
    """Add one Latency event to a payload the caller owns (see own_latency), in place."""

    def put(sketches: dict[str, Any], key: str, x: float) -> None:
        if sketches.get(key):
            LogSketch.json_add_into(sketches[key], float(x))
        else:
            sketches[key] = LogSketch.json_add(None, float(x))

    put(payload, "e", event["end_to_end_s"])
    for stage in STAGES:
        put(payload["s"], stage, event["stages"][stage])
    put(payload["p"], event["priority"], event["acquisition_to_result_s"])


def plan_latency(get: Get, partition: int, offset: int, event: Mapping[str, Any]) -> Plan:
    seen_key = f"s|{latency_identity(event)}"
    if get(seen_key) is not None:
        return Plan(duplicate=True)
    updates = [(stats_key(w, lab, dim, value), lambda v: add_latency(v, event))
               for w, lab in labels(_event_time(event)) for dim, value in _dimensions(event)]
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
        for w, lab in labels(_event_time(event)):
            for dim, value in _dimensions(event):
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
               for w, lab in labels(_event_time(record)) for dim, value in dims]
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


# --- roll-ups ------------------------------------------------------------------------------

def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass
class Aggregate:
    """One stats key summed over partitions."""

    counts: dict[str, int] = field(default_factory=empty_counts)
    end_to_end: LogSketch = field(default_factory=LogSketch)
    stages: dict[str, LogSketch] = field(
        default_factory=lambda: {s: LogSketch() for s in STAGES})
    by_priority: dict[str, LogSketch] = field(default_factory=dict)

    def add_counts(self, payload: Mapping[str, int]) -> None:
        for k, v in payload.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)

    def add_latency(self, payload: Mapping[str, Any]) -> None:
        self.end_to_end.merge(LogSketch.from_json(payload["e"]))
        for stage, data in payload["s"].items():
            self.stages.setdefault(stage, LogSketch()).merge(LogSketch.from_json(data))
        for priority, data in payload["p"].items():
            self.by_priority.setdefault(priority, LogSketch()).merge(LogSketch.from_json(data))


def aggregate(counts: Cells = (), latency: Cells = (),
              want: Callable[[str], bool] = lambda key: True) -> dict[str, Aggregate]:
    """Stats key → Aggregate, summing the cells of count tables and latency tables over
    partitions; `want` selects stats keys (seen entries are ignored)."""
    out: dict[str, Aggregate] = {}
    for cells, latency_cells in ((counts, False), (latency, True)):
        for ckey, cell in cells:
            split = split_cell_key(ckey)
            if split is None or not want(split[1]):
                continue
            agg = out.setdefault(split[1], Aggregate())
            if latency_cells:
                agg.add_latency(cell["v"])
            else:
                agg.add_counts(cell["v"])
    return out


def summary(sketch: LogSketch) -> dict[str, Any]:
    """{"p50", "p90", "p99" (seconds, null when empty), "count"}."""
    return {**{name: sketch.quantile(q) for name, q in QUANTILES.items()},
            "count": sketch.count}


def latency_summary(agg: Aggregate) -> dict[str, Any]:
    return {
        "end_to_end_s": summary(agg.end_to_end),
        "stages": {s: summary(agg.stages[s]) for s in sorted(agg.stages)},
        "time_to_result_by_priority": {p: summary(agg.by_priority[p])
                                       for p in sorted(agg.by_priority)},
    }


def row(key: StatsKey, agg: Aggregate) -> dict[str, Any]:
    """One row of GET /stats/windows."""
    return {"start": rfc3339(key.start), "label": key.label, "value": key.value,
            "counts": dict(agg.counts), "latency": latency_summary(agg)}


def snapshot(key: StatsKey, agg: Aggregate, produced_at: str) -> dict[str, Any]:
    """The StatsSnapshot body for radiology.stats.v1 (schemas/stats-snapshot.v1.json)."""
    return {
        "window": {"kind": key.window, "start": rfc3339(key.start), "label": key.label},
        "dimension": {"kind": key.dimension, "value": key.value},
        "counts": dict(agg.counts),
        "latency": latency_summary(agg),
        "produced_at": produced_at,
        "schema_version": "1",
    }


def _legacy(counts: Mapping[str, int]) -> dict[str, int]:
    # GET /stats has served `positive` since v1; `positives` is the name everywhere else.
    return {**counts, "positive": counts["positives"]}


def totals(counts: Cells, deadletters: Cells = ()) -> dict[str, Any]:
    """GET /stats: all-time counts for the city, per hospital and per service."""
    aggs = aggregate(chain(counts, deadletters), want=lambda k: k.startswith("total|"))
    city = aggs.get(stats_key("total", "total", "city", CITY), Aggregate()).counts
    by: dict[str, dict[str, dict[str, int]]] = {"hospital": {}, "service": {}}
    for key, agg in aggs.items():
        parsed = StatsKey.parse(key)
        if parsed.dimension in by:
            by[parsed.dimension][parsed.value] = _legacy(agg.counts)
    return {
        "city": _legacy(city),
        "hospitals": dict(sorted(by["hospital"].items())),
        "services": dict(sorted(by["service"].items())),
    }


# --- the windows query ---------------------------------------------------------------------

#: Rows GET /stats/windows returns when no `limit` is given, and the most it returns.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000


class QueryError(ValueError):
    """A bad query parameter; the API answers 400 with `parameter` and `detail`."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True)
class WindowQuery:
    window: Window
    dimension: Dimension
    value: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> WindowQuery:
        """From query parameters; unknown parameters are ignored (cache busters)."""
        window = params.get("window")
        if window not in WINDOWS:
            raise QueryError("window", f"must be one of {', '.join(WINDOWS)}")
        dimension = params.get("dimension")
        if dimension not in DIMENSIONS:
            raise QueryError("dimension", f"must be one of {', '.join(DIMENSIONS)}")
        value = params.get("value")
        if value is not None and not VALUE_PATTERN.match(value):
            raise QueryError("value", "must match ^[A-Za-z0-9_.-]{1,64}$")
        raw_limit = params.get("limit")
        limit = DEFAULT_LIMIT
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                raise QueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
            limit = int(raw_limit)
        return cls(cast(Window, window), cast(Dimension, dimension), value, limit)

    def wants(self, key: str) -> bool:
        prefix = f"{self.window}|"
        if not key.startswith(prefix):
            return False
        parsed = StatsKey.parse(key)
        return parsed.dimension == self.dimension and (
            self.value is None or parsed.value == self.value)


def window_rows(query: WindowQuery, counts: Cells, latency: Cells = ()) -> dict[str, Any]:
    """GET /stats/windows: rows sorted by (start, value); with more than `limit` rows, the
    latest `limit` are kept."""
    aggs = aggregate(counts, latency, want=query.wants)
    # Labels sort like their starts (zero-padded, most significant first).
    keyed = sorted(((StatsKey.parse(k), a) for k, a in aggs.items()),
                   key=lambda ka: (ka[0].label, ka[0].value))
    rows = [row(k, a) for k, a in keyed][-query.limit:]
    return {"window": query.window, "dimension": query.dimension, "rows": rows}
