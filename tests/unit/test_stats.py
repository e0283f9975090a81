"""Windows and keys, counting rules, exact-once table writes under simulated crashes, and the
rows and snapshots the stats API and topic serve (checked against their published schemas)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from streams.analytics import windows
from streams.analytics.counting import finding_identity
from streams.analytics.exact_once import (
    Plan,
    plan_batch,
    plan_deadletter,
    plan_finding,
    plan_latency,
)
from streams.analytics.rollups import Aggregate, aggregate, snapshot, totals
from streams.analytics.sketch import LogSketch
from streams.analytics.stats_keys import CELL_PREFIX, StatsKey, stats_key
from streams.analytics.window_query import QueryError, WindowQuery, window_rows
from streams.contract.schemas import SCHEMA_DIR, EventKind, validate

T0 = "2024-05-14T09:59:59.5Z"


def finding(study: str = "1.2.3", *, status: str = "ok", positive: bool = False,
            service: str = "chest-xray", version: str = "1", hospital: str = "H001",
            produced_at: str = T0, codes: tuple[str, ...] = ("lung_nodule",)) -> dict[str, Any]:
    items = [{"code": c, "display": c, "score": 0.9 if positive else 0.1, "positive": positive,
              "threshold": 0.5} for c in codes] if status == "ok" else []
    body: dict[str, Any] = {
        "study_uid": study, "hospital_id": hospital, "device_id": f"{hospital}-dx1",
        "service": service, "model": {"name": "m", "version": version}, "status": status,
        "findings": items, "produced_at": produced_at, "priority": "routine"}
    if status == "technical_defect":
        body["defect_reason"] = "pixels_unreadable"
    validate(EventKind.FINDING, body)
    return body


def latency(study: str = "1.2.3", e2e: float = 0.5, *, priority: str = "routine",
            produced_at: str = T0) -> dict[str, Any]:
    body = {"study_uid": study, "service": "chest-xray", "hospital_id": "H001",
            "priority": priority, "stages": {"queue": 0.01, "fetch": 0.02, "preprocess": 0.0,
                                             "infer": e2e / 2, "publish": 0.001},
            "end_to_end_s": e2e, "acquisition_to_result_s": e2e + 60, "produced_at": produced_at}
    validate(EventKind.LATENCY, body)
    return body


class Table(dict[str, Any]):
    """A table as its changelog leaves it: writes applied in order, possibly cut short."""

    def run(self, partition: int, offset: int, plan: Plan, crash_after: int | None = None) -> bool:
        for i, (key, value) in enumerate(plan.writes):
            if crash_after is not None and i >= crash_after:
                return False
            self[key] = value
        return True


def counts_of(table: Table, key: str) -> dict[str, int]:
    return aggregate(table.items(), want=key.__eq__).get(key, Aggregate()).counts


# --- windows and keys ----------------------------------------------------------------------

def test_window_labels_and_starts_in_utc() -> None:
    at = datetime.fromisoformat("2024-05-14T11:59:59.999+02:00")
    assert windows.labels(at) == [("hour", "2024-05-14T09"), ("day", "2024-05-14"),
                                  ("week", "2024-W20"), ("total", "total")]
    assert windows.rfc3339(windows.start("hour", "2024-05-14T09")) == "2024-05-14T09:00:00Z"
    assert windows.rfc3339(windows.start("week", "2024-W20")) == "2024-05-13T00:00:00Z"
    assert windows.start("total", "total") is None


@pytest.mark.parametrize(("day", "week", "monday"), [
    ("2024-12-30", "2025-W01", "2024-12-30"),   # ISO week-year ahead of the calendar year
    ("2021-01-03", "2020-W53", "2020-12-28"),   # ... and behind it, in a 53-week year
    ("2024-05-19", "2024-W20", "2024-05-13"),   # Sunday belongs to the week of its Monday
])
def test_iso_weeks_follow_isocalendar(day: str, week: str, monday: str) -> None:
    at = datetime.fromisoformat(day + "T23:30:00+00:00")
    assert windows.label("week", at) == week
    assert windows.start("week", week) == datetime.fromisoformat(monday + "T00:00:00+00:00")


def test_window_labels_sort_like_their_starts() -> None:
    times = [datetime(2024, 12, 29, tzinfo=UTC), datetime(2025, 1, 6, tzinfo=UTC),
             datetime(2024, 3, 1, tzinfo=UTC)]
    for w in windows.WINDOWS[:3]:
        labs = [windows.label(w, t) for t in times]
        assert sorted(labs) == [windows.label(w, t) for t in sorted(times)]


def test_stats_keys_round_trip() -> None:
    key = stats_key("week", "2024-W20", "finding", "pleural_effusion")
    assert key == "week|2024-W20|finding|pleural_effusion"
    parsed = StatsKey.parse(key)
    assert (parsed.window, parsed.label, parsed.dimension, parsed.value) == (
        "week", "2024-W20", "finding", "pleural_effusion")
    with pytest.raises(ValueError):
        StatsKey.parse("month|2024-05|city|city")


# --- counting rules ------------------------------------------------------------------------

def test_counts_by_status_positivity_and_dimension() -> None:
    t = Table()
    events = [finding("1.1", positive=True), finding("1.2"),
              finding("1.3", status="technical_defect"),
              finding("1.4", status="not_applicable", service="none"),
              finding("1.5", positive=True, codes=("a", "b"))]
    for offset, f in enumerate(events):
        t.run(0, offset, plan_finding(t.get, 0, offset, f))
    city = counts_of(t, "hour|2024-05-14T09|city|city")
    assert city == {"studies": 5, "findings": 5, "ok": 3, "positives": 2, "technical_defect": 1,
                    "not_applicable": 1, "deadletters": 0}
    assert counts_of(t, "total|total|service|none")["not_applicable"] == 1
    assert counts_of(t, "day|2024-05-14|device|H001-dx1")["findings"] == 5
    assert counts_of(t, "week|2024-W20|finding|lung_nodule") == {
        "studies": 2, "findings": 2, "ok": 2, "positives": 1, "technical_defect": 0,
        "not_applicable": 0, "deadletters": 0}
    assert counts_of(t, "total|total|finding|b")["positives"] == 1


def test_identity_separates_services_and_model_versions() -> None:
    a, b, c = finding(), finding(version="2"), finding(service="other")
    assert len({finding_identity(a), finding_identity(b), finding_identity(c)}) == 3
    assert finding_identity(a) == finding_identity(finding(produced_at="2030-01-01T00:00:00Z"))


def test_studies_are_distinct_per_window_and_value() -> None:
    # One study read by two services (and one of them by a second model version), with the
    # findings produced either side of an hour boundary.
    t = Table()
    later = "2024-05-14T10:00:00.5Z"
    events = [finding("9.1"), finding("9.1", version="2"),
              finding("9.1", service="ct-lung", produced_at=later)]
    for offset, f in enumerate(events):
        t.run(1, offset, plan_finding(t.get, 1, offset, f))
    assert counts_of(t, "total|total|city|city")["studies"] == 1
    assert counts_of(t, "total|total|city|city")["findings"] == 3
    assert counts_of(t, "hour|2024-05-14T09|city|city")["studies"] == 1
    assert counts_of(t, "hour|2024-05-14T10|city|city")["studies"] == 1
    assert counts_of(t, "total|total|service|chest-xray")["studies"] == 1
    assert counts_of(t, "total|total|service|ct-lung")["studies"] == 1
    assert counts_of(t, "day|2024-05-14|hospital|H001") == {
        "studies": 1, "findings": 3, "ok": 3, "positives": 0, "technical_defect": 0,
        "not_applicable": 0, "deadletters": 0}


def test_a_replayed_finding_counts_once_in_the_window_of_its_first_copy() -> None:
    t = Table()
    first = finding("7.7", produced_at="2024-05-14T09:10:00Z")
    replay = finding("7.7", produced_at="2024-05-14T11:10:00Z")  # re-inferred after a crash
    t.run(0, 0, plan_finding(t.get, 0, 0, first))
    plan = plan_finding(t.get, 0, 1, replay)
    assert plan.duplicate and plan.writes == []
    assert counts_of(t, "hour|2024-05-14T09|city|city")["findings"] == 1
    assert "hour|2024-05-14T11|city|city" not in aggregate(t.items())


# --- exact once under crashes --------------------------------------------------------------

def _stream(seed: int) -> list[tuple[int, dict[str, Any]]]:
    """(partition, finding) in log order: 40 findings over 2 partitions, each published twice,
    with replays interleaved."""
    rng = random.Random(seed)
    uniques = [finding(f"5.{i // 2}", status=rng.choice(["ok", "ok", "technical_defect"]),
                       positive=rng.random() < 0.4, service=rng.choice(["a", "b"]),
                       version=str(i % 2 + 1), hospital=rng.choice(["H1", "H2"]),
                       produced_at=f"2024-05-{14 + rng.randrange(9):02d}T"
                                   f"{rng.randrange(24):02d}:00:00Z",
                       codes=tuple(rng.sample(["x", "y", "z"], 2)))
               for i in range(40)]
    events = uniques + rng.sample(uniques, len(uniques))
    return [(int(f["study_uid"].split(".")[1]) % 2, f) for f in events]


def _consume(table: Table, log: list[tuple[int, dict[str, Any]]], committed: dict[int, int],
             crash: tuple[int, int] | None, rng: random.Random | None = None,
             done: dict[int, int] | None = None) -> bool:
    """Process every partition's log from its committed offset: one event at a time with
    plan_finding or, given `rng`, in plan_batch micro-batches of 1..8 events. With `crash` =
    (k, w), crash inside the first unit (event or batch) from the k-th on that has writes,
    after w modulo its writes; returns False on the crash. `done` receives, per partition, the
    offset up to which units finished: what may be committed, as a batch is acknowledged only
    once it has finished."""
    done = {} if done is None else done
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for p, f in log:
        by_partition.setdefault(p, []).append(f)
    n = 0
    for p, fs in sorted(by_partition.items()):
        offset = committed.get(p, 0)
        while offset < len(fs):
            size = rng.randint(1, 8) if rng else 1
            batch = [(p, o, fs[o]) for o in range(offset, min(len(fs), offset + size))]
            plan = (plan_batch(table.get, plan_finding, batch) if rng
                    else plan_finding(table.get, p, offset, fs[offset]))
            at = None
            if crash is not None and n >= crash[0] and plan.writes:
                at = crash[1] % len(plan.writes)
            if not table.run(p, offset, plan, crash_after=at):
                return False
            n += 1
            offset += len(batch)
            done[p] = offset
    return True


@pytest.mark.parametrize("seed", range(12))
def test_counts_stay_exact_when_a_crash_cuts_writes_and_input_is_redelivered(seed: int) -> None:
    log = _stream(seed)
    truth = Table()
    assert _consume(truth, log, {}, None)
    expected = aggregate(truth.items())

    rng = random.Random(seed)
    table = Table()
    crash = (rng.randrange(len(log) // 2), rng.randrange(40))
    assert not _consume(table, log, {}, crash)
    # The worker restarts from committed offsets that may be well behind what was applied.
    committed = {0: rng.randrange(crash[0] // 2 + 1), 1: 0}
    assert _consume(table, log, committed, None)
    got = aggregate(table.items())
    assert {k: a.counts for k, a in got.items()} == {k: a.counts for k, a in expected.items()}
    # And the counts are those of the distinct findings, computed without the table machinery.
    distinct = {finding_identity(f): f for _, f in log}
    city = got["total|total|city|city"].counts
    assert city["findings"] == len(distinct)
    assert city["studies"] == len({f["study_uid"] for f in distinct.values()})
    assert city["ok"] == sum(f["status"] == "ok" for f in distinct.values())


def test_latency_and_deadletters_count_once_per_identity_across_a_crash() -> None:
    t = Table()
    events = [latency("1.1", 0.2), latency("1.2", 0.4, priority="urgent"), latency("1.1", 0.9)]
    assert not t.run(0, 0, plan_latency(t.get, 0, 0, events[0]), crash_after=3)
    for offset, e in enumerate(events):
        t.run(0, offset, plan_latency(t.get, 0, offset, e))
    agg = aggregate(latency=t.items())["total|total|city|city"]
    assert agg.end_to_end == LogSketch().extend([0.2, 0.4])
    assert agg.by_priority["urgent"].count == 1 and agg.stages["preprocess"].quantile(0.5) == 0.0

    d = Table()
    dead = {"reason": "invalid_json", "detail": "x", "key": None, "payload_excerpt": "{",
            "origin": {"topic": "radiology.studies.v1", "partition": 2, "offset": 17},
            "produced_at": T0, "service": "chest-xray"}
    validate(EventKind.DEADLETTER, dead)
    for offset in (0, 1):
        d.run(3, offset, plan_deadletter(d.get, 3, offset, dead))
    assert counts_of(d, "week|2024-W20|city|city")["deadletters"] == 1
    assert counts_of(d, "week|2024-W20|service|chest-xray")["deadletters"] == 1


# --- what the API and the topic serve ------------------------------------------------------

def _openapi_validator(name: str) -> Draft202012Validator:
    doc = yaml.safe_load((SCHEMA_DIR / "stats-api.openapi.yaml").read_text())
    assert doc["openapi"].startswith("3.1")
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": doc["components"]})


def _city_tables() -> tuple[Table, Table]:
    counts, lat = Table(), Table()
    for offset, f in enumerate([finding("1.1", positive=True), finding("1.2", hospital="H002"),
                                finding("1.3", produced_at="2024-05-20T00:00:00Z")]):
        counts.run(0, offset, plan_finding(counts.get, 0, offset, f))
    for offset, e in enumerate([latency("1.1", 0.3), latency("1.2", 0.6)]):
        lat.run(2, offset, plan_latency(lat.get, 2, offset, e))
    return counts, lat


def test_window_rows_match_the_openapi_contract() -> None:
    counts, lat = _city_tables()
    body = window_rows(WindowQuery.parse({"window": "week", "dimension": "city"}),
                       counts.items(), lat.items())
    _openapi_validator("WindowRows").validate(body)
    assert [r["start"] for r in body["rows"]] == ["2024-05-13T00:00:00Z", "2024-05-20T00:00:00Z"]
    assert body["rows"][0]["counts"]["studies"] == 2
    assert body["rows"][0]["latency"]["end_to_end_s"]["count"] == 2
    assert body["rows"][1]["latency"]["end_to_end_s"] == {"p50": None, "p90": None, "p99": None,
                                                          "count": 0}
    one = window_rows(WindowQuery.parse({"window": "hour", "dimension": "hospital",
                                         "value": "H002", "limit": "5"}), counts.items())
    assert [(r["value"], r["counts"]["findings"]) for r in one["rows"]] == [("H002", 1)]
    latest = window_rows(WindowQuery.parse({"window": "day", "dimension": "city", "limit": "1"}),
                         counts.items())
    assert [r["label"] for r in latest["rows"]] == ["2024-05-20"]
    total = window_rows(WindowQuery.parse({"window": "total", "dimension": "finding"}),
                        counts.items())
    assert total["rows"][0]["start"] is None and total["rows"][0]["value"] == "lung_nodule"


def test_totals_keep_the_v1_stats_shape() -> None:
    counts, _ = _city_tables()
    body = totals(counts.items())
    _openapi_validator("Totals").validate(body)
    assert body["city"]["studies"] == 3 and body["city"]["positive"] == 1
    assert set(body["hospitals"]) == {"H001", "H002"}
    assert body["hospitals"]["H002"]["studies"] == 1
    assert body["services"]["chest-xray"]["findings"] == 3


@pytest.mark.parametrize(("params", "parameter"), [
    ({}, "window"),
    ({"window": "month", "dimension": "city"}, "window"),
    ({"window": "hour", "dimension": "patient"}, "dimension"),
    ({"window": "hour", "dimension": "city", "value": "a b"}, "value"),
    ({"window": "hour", "dimension": "city", "limit": "0"}, "limit"),
    ({"window": "hour", "dimension": "city", "limit": "ten"}, "limit"),
])
def test_bad_query_parameters_are_named(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(QueryError) as err:
        WindowQuery.parse(params)
    assert err.value.parameter == parameter and err.value.detail
    body = {"error": "bad_request", "parameter": err.value.parameter, "detail": err.value.detail}
    _openapi_validator("Error").validate(body)


def test_snapshots_validate_against_the_topic_schema() -> None:
    counts, lat = _city_tables()
    aggs = aggregate(counts.items(), lat.items())
    assert aggs
    for key, agg in aggs.items():
        validate(EventKind.STATS_SNAPSHOT,
                 snapshot(StatsKey.parse(key), agg, "2024-05-14T10:00:00Z"))


# --- micro-batches: one write per key and batch, still exact under crashes -------------------

@pytest.mark.parametrize("seed", range(16))
def test_batched_counts_equal_one_by_one_and_stay_exact_across_a_crash(seed: int) -> None:
    log = _stream(seed)
    one_by_one = Table()
    assert _consume(one_by_one, log, {}, None)
    expected = {k: a.counts for k, a in aggregate(one_by_one.items()).items()}

    rng = random.Random(seed)
    batched = Table()
    assert _consume(batched, log, {}, None, rng)
    assert {k: a.counts for k, a in aggregate(batched.items()).items()} == expected
    # Coalescing writes each key at most once per batch.
    assert len(batched) == len(one_by_one)

    table, done = Table(), dict[int, int]()
    crash = (rng.randrange(12), rng.randrange(60))
    assert not _consume(table, log, {}, crash, rng, done)
    # Restart from committed offsets anywhere up to what finished (possibly well behind it).
    committed = {p: rng.randint(0, end) for p, end in done.items()}
    assert _consume(table, log, committed, None, rng)
    assert {k: a.counts for k, a in aggregate(table.items()).items()} == expected


def test_a_batch_writes_each_cell_once_and_seen_entries_last() -> None:
    events = [(0, offset, latency(f"3.{offset}", 0.1 * (offset + 1))) for offset in range(8)]
    plan = plan_batch(Table().get, plan_latency, events)
    keys = [k for k, _ in plan.writes]
    assert len(keys) == len(set(keys))
    cells = [k for k in keys if k.startswith("c|")]
    assert keys[:len(cells)] == cells and len(keys) - len(cells) == 8  # 8 seen entries last
    table = Table()
    table.run(0, 7, plan)
    agg = aggregate(latency=table.items())["total|total|city|city"]
    assert agg.end_to_end == LogSketch().extend([0.1 * (o + 1) for o in range(8)])
    # Every coalesced cell carries the offset of the last event folded into it.
    assert {table[k]["o"] for k in cells} == {7}


@pytest.mark.parametrize("seed", range(8))
def test_latency_batches_fold_like_event_by_event_and_leave_the_table_alone(seed: int) -> None:
    """plan_batch folds a batch of Latency events into each cell with one copy of its
    sketches (plan_latency_batch). It must write what planning event by event writes, skip
    copies and cells a crash already made durable the same way, and never change the values
    the table holds while it plans."""
    rng = random.Random(seed)
    table = Table()
    offset = 0
    for round_ in range(4):
        events = []
        for _ in range(rng.randint(1, 12)):
            study = f"7.{rng.randrange(10)}"            # repeats: copies within and across batches
            e = latency(study, rng.choice([0.0, 0.003, 0.2, 1.5, 40.0]),
                        priority=rng.choice(["routine", "urgent", "emergency"]),
                        produced_at=rng.choice([T0, "2024-05-14T11:59:00Z"]))
            events.append((1, offset, e))
            offset += 1
        if round_ == 2:  # a crash replay: the same offsets again, some cells already durable
            events = [(1, o - 3, e) for _, o, e in events]
        before = copy.deepcopy(dict(table))
        batched = plan_batch(table.get, plan_latency, events, timestamp=1.8e9)
        one_by_one = plan_batch(table.get, lambda *a: plan_latency(*a), events, timestamp=1.8e9)
        assert dict(table) == before
        assert dict(batched.writes) == dict(one_by_one.writes)
        assert [k for k, _ in batched.writes if k.startswith(CELL_PREFIX)] \
            == [k for k, _ in batched.writes][:len([k for k, _ in batched.writes
                                                    if k.startswith(CELL_PREFIX)])]
        assert sorted(batched.touched) == sorted(one_by_one.touched)
        table.run(1, events[-1][1], batched)
