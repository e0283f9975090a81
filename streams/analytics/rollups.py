"""Roll-ups of the city statistics (pure logic): a stats key's cells summed over partitions, and
the rows, snapshots and totals the stats API and radiology.stats.v1 serve from them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from streams.analytics.counting import COUNTERS
from streams.analytics.sketch import LogSketch
from streams.analytics.stats_keys import CITY, StatsKey, split_cell_key, stats_key
from streams.analytics.windows import rfc3339
from streams.contract.events import STAGES

#: Quantiles the API and the snapshots report.
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}

Cells = Iterable[tuple[str, Any]]


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
