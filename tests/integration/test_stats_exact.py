"""Exact statistics through a crash, on the real broker and a real worker process.

A known set of Findings and Latency events (built with streams.contract.events, every one published
twice) goes straight to radiology.findings.v1 / radiology.latency.v1. The worker is killed with
SIGKILL while it counts and restarted with the same app id (consumer group and tables); at the
end GET /stats and GET /stats/windows must equal the ground truth computed here, exactly.

Event times lie in a random week years ahead, so the hour/day/week rows of those windows hold
only this test's events even while others publish to the shared broker; ids are unique per run.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.ops.processes import spawn_worker, stop
from services.ops.wait_http import wait_http
from streams.analytics import windows
from streams.analytics.counting import COUNTERS
from streams.analytics.sketch import LogSketch
from streams.contract import catalog, topics
from streams.contract.catalog import FindingSpec
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.events import (
    STAGES,
    finding_not_applicable,
    finding_ok,
    finding_technical_defect,
    latency,
)
from streams.contract.schemas import EventKind, validate

from .conftest import _free_port

pytestmark = pytest.mark.integration

N_STUDIES = 120
TIMEOUT_S = 120.0


@dataclasses.dataclass
class Truth:
    """Expected counts and latency samples per (window, label, dimension, value)."""

    counts: dict[tuple[str, str, str, str], dict[str, int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(COUNTERS, 0)))
    studies: dict[tuple[str, str, str, str], set[str]] = dataclasses.field(
        default_factory=lambda: defaultdict(set))
    e2e: dict[tuple[str, str, str, str], list[float]] = dataclasses.field(
        default_factory=lambda: defaultdict(list))
    stages: dict[tuple[str, str, str, str, str], list[float]] = dataclasses.field(
        default_factory=lambda: defaultdict(list))
    ttr: dict[tuple[str, str, str, str, str], list[float]] = dataclasses.field(
        default_factory=lambda: defaultdict(list))

    def add_finding(self, f: dict[str, Any]) -> None:
        at = datetime.fromisoformat(f["produced_at"].replace("Z", "+00:00"))
        dims = [("city", "city"), ("hospital", f["hospital_id"]), ("device", f["device_id"]),
                ("service", f["service"])]
        for w, lab in windows.labels(at):
            for dim, value in dims:
                key = (w, lab, dim, value)
                c = self.counts[key]
                c["findings"] += 1
                c[f["status"]] += 1
                c["positives"] += any(x["positive"] for x in f["findings"])
                self.studies[key].add(f["study_uid"])
            for x in f["findings"]:
                key = (w, lab, "finding", x["code"])
                c = self.counts[key]
                c["findings"] += 1
                c["ok"] += 1
                c["positives"] += x["positive"]
                self.studies[key].add(f["study_uid"])

    def add_latency(self, e: dict[str, Any]) -> None:
        at = datetime.fromisoformat(e["produced_at"].replace("Z", "+00:00"))
        for w, lab in windows.labels(at):
            dims = [("city", "city"), ("hospital", e["hospital_id"]), ("service", e["service"])]
            if e.get("device_id"):
                dims.append(("device", e["device_id"]))
            for dim, value in dims:
                key = (w, lab, dim, value)
                self.counts[key]  # a row exists wherever a latency sample lands
                self.e2e[key].append(e["end_to_end_s"])
                for s in STAGES:
                    self.stages[(*key, s)].append(e["stages"][s])
                self.ttr[(*key, e["priority"])].append(e["acquisition_to_result_s"])

    def row(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        def summary(values: list[float]) -> dict[str, Any]:
            sk = LogSketch().extend(values)
            return {"p50": sk.quantile(0.5), "p90": sk.quantile(0.9), "p99": sk.quantile(0.99),
                    "count": sk.count}
        priorities = sorted(p for (*k, p) in self.ttr if tuple(k) == key)
        return {
            "counts": {**self.counts[key], "studies": len(self.studies[key])},
            "latency": {
                "end_to_end_s": summary(self.e2e.get(key, [])),
                "stages": {s: summary(self.stages.get((*key, s), [])) for s in sorted(STAGES)},
                "time_to_result_by_priority": {p: summary(self.ttr[(*key, p)])
                                               for p in priorities},
            },
        }


def build_city(tag: str, seed: int) -> tuple[list[tuple[str, str, dict[str, Any]]], Truth]:
    """(topic, key, body) of every distinct event, and the truth they add up to."""
    rng = random.Random(seed)
    base = datetime(2031, 1, 6, tzinfo=UTC) + timedelta(weeks=rng.randrange(1500))
    proto = catalog.catalog()[0]
    specs = [
        dataclasses.replace(proto, id=f"t{tag}-a", findings=(
            FindingSpec(f"t{tag}_nodule", "Nodule", 0, "probe", threshold_override=0.5),
            FindingSpec(f"t{tag}_effusion", "Effusion", 1, "probe", threshold_override=0.4))),
        dataclasses.replace(proto, id=f"t{tag}-b", findings=(
            FindingSpec(f"t{tag}_calcium", "Calcium", 0, "probe", threshold_override=0.6),)),
    ]
    hospitals = [f"X{tag}{i}" for i in range(3)]
    events: list[tuple[str, str, dict[str, Any]]] = []
    truth = Truth()
    for _ in range(N_STUDIES):
        hospital = rng.choice(hospitals)
        study = {"study_uid": f"2.25.{uuid.uuid4().int}", "hospital_id": hospital,
                 "device_id": f"{hospital}-d{rng.randrange(2)}",
                 "priority": rng.choice(["routine", "routine", "urgent", "emergency"]),
                 "modality": "DX", "body_part": "CHEST"}
        # Ten days of studies; a study's findings minutes apart, sometimes across an hour.
        t0 = base + timedelta(minutes=rng.randrange(10 * 24 * 60))
        uid = study["study_uid"]
        if rng.random() < 0.1:
            at = windows.rfc3339(t0)
            assert at is not None
            f = finding_not_applicable(study, at)
            events.append((topics.FINDINGS.name, uid, f))
            truth.add_finding(f)
            continue
        chosen = specs if rng.random() < 0.4 else [rng.choice(specs)]
        for k, spec in enumerate(chosen):
            versions = [spec] + ([dataclasses.replace(spec, model_version="2")]
                                 if rng.random() < 0.1 else [])
            for v, vspec in enumerate(versions):
                done = t0 + timedelta(minutes=7 * k + 3 * v, seconds=rng.random())
                at = windows.rfc3339(done)
                assert at is not None
                if rng.random() < 0.15:
                    f = finding_technical_defect(study, vspec, "pixels_unreadable", at)
                else:
                    scores = [rng.random() for _ in vspec.findings]
                    f = finding_ok(study, vspec, scores, at)
                events.append((topics.FINDINGS.name, uid, f))
                truth.add_finding(f)
                if v == 0:  # one Latency event per (study, service), from the first version
                    stages = {s: rng.lognormvariate(-3, 1) for s in STAGES}
                    stages["queue"] = rng.paretovariate(1.2) * 0.01
                    e2e = sum(stages.values())
                    lat = latency(study, spec, stages, e2e, e2e + rng.expovariate(1 / 90),
                                  rng.randrange(1, 9), at)
                    events.append((topics.LATENCY.name, uid, lat))
                    truth.add_latency(lat)
    for _, _, body in events:
        validate(EventKind.FINDING if "status" in body else EventKind.LATENCY, body)
    return events, truth


@dataclasses.dataclass
class StatsWorker:
    app_id: str
    bootstrap: str
    state: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def start(self) -> None:
        port = _free_port()
        env = {
            **os.environ,
            "RADSTREAM_KAFKA": self.bootstrap,
            "RADSTREAM_APP_ID": self.app_id,
            "RADSTREAM_WEB_PORT": str(port),
            "RADSTREAM_METRICS_PORT": str(_free_port()),
            "RADSTREAM_OFFSET_RESET": "latest",
            "RADSTREAM_DATADIR": str(self.state),
            # The restarted member must not wait long for the dead one's session to expire.
            "RADSTREAM_SESSION_TIMEOUT_S": "10",
            **self.env,
        }
        self.proc = spawn_worker(env, self.log)
        self.url = f"http://127.0.0.1:{port}"
        if not wait_http(self.url + "/stats", 120):
            pytest.fail(f"worker did not serve {self.url}/stats; see {self.log}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return orjson.loads(resp.read())


@pytest.fixture
def stats_worker(bootstrap: str, tmp_path: Path) -> Iterator[StatsWorker]:
    log = Path(__file__).resolve().parents[2] / "artifacts" / "stats-worker.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    w = StatsWorker(f"radstream-stats-exact-{uuid.uuid4().hex[:8]}", bootstrap,
                    tmp_path / "faust", log)
    try:
        yield w
    finally:
        w.stop()


def send(producer: Producer, batch: list[tuple[str, str, dict[str, Any]]]) -> None:
    for topic, key, body in batch:
        ce_type = topics.FINDINGS.event_type if topic == topics.FINDINGS.name \
            else topics.LATENCY.event_type
        producer.produce(topic, key=key.encode(), value=orjson.dumps(body),
                         headers=list(ce_headers(ce_type, "tests/stats-exact")))
    assert producer.flush(30) == 0


def wait_until(check: Any, what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def position(worker: StatsWorker, producer: Producer, tag: str) -> None:
    """Probe every partition of both source topics until the worker counted a probe there and
    committed an offset: from then on nothing we publish can fall before its start."""
    study = {"hospital_id": "PROBE", "device_id": "probe", "priority": "routine",
             "modality": "OT", "body_part": "PROBE"}
    pending = set(range(topics.FINDINGS.partitions))
    deadline = time.monotonic() + TIMEOUT_S
    while pending and time.monotonic() < deadline:
        now = utc_now_rfc3339()
        for p in pending:
            service = f"t{tag}-probe{p}"
            spec = dataclasses.replace(catalog.catalog()[0], id=service, model="probe",
                                       findings=())
            s = {**study, "study_uid": f"2.25.{uuid.uuid4().int}"}
            producer.produce(topics.FINDINGS.name, partition=p, key=s["study_uid"].encode(),
                             value=orjson.dumps(finding_ok(s, spec, [], now)))
            producer.produce(topics.LATENCY.name, partition=p, key=s["study_uid"].encode(),
                             value=orjson.dumps(latency(s, spec, dict.fromkeys(STAGES, 0.1),
                                                        0.5, 1.0, 1, now)))
        assert producer.flush(30) == 0
        time.sleep(2.0)
        for p in list(pending):
            rows = worker.get(
                f"/stats/windows?window=total&dimension=service&value=t{tag}-probe{p}")["rows"]
            if rows and rows[0]["counts"]["findings"] and \
                    rows[0]["latency"]["end_to_end_s"]["count"]:
                pending.discard(p)
    assert not pending, f"the worker did not count probes on partitions {sorted(pending)}"

    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": worker.app_id,
                         "enable.auto.commit": False})
    tps = [TopicPartition(spec_.name, p) for spec_ in (topics.FINDINGS, topics.LATENCY)
           for p in range(spec_.partitions)]
    try:
        wait_until(lambda: all(tp.offset >= 0 for tp in consumer.committed(tps, timeout=10)),
                   "committed offsets on every partition")
    finally:
        consumer.close()


def test_counts_are_exact_through_replays_and_a_kill_9(stats_worker: StatsWorker,
                                                       bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:6]
    events, truth = build_city(tag, seed=int(tag, 16))
    # Every event twice; each replay lands somewhere after its original.
    rng = random.Random(tag)
    log: list[tuple[str, str, dict[str, Any]]] = []
    pending = list(events)
    replays: list[tuple[str, str, dict[str, Any]]] = []
    while pending or replays:
        if pending and (not replays or rng.random() < 0.6):
            ev = pending.pop(0)
            log.append(ev)
            replays.append(ev)
        else:
            log.append(replays.pop(rng.randrange(len(replays))))
    assert len(log) == 2 * len(events)

    stats_low = watermark(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "linger.ms": 5})
    stats_worker.start()
    position(stats_worker, producer, tag)

    expected_findings = sum(1 for t, _, _ in events if t == topics.FINDINGS.name)
    cut = len(log) * 3 // 5
    send(producer, log[:cut])
    hospitals = sorted({b["hospital_id"] for _, _, b in events})

    def counted() -> int:
        rows = stats_worker.get("/stats")["hospitals"]
        return sum(rows.get(h, {}).get("findings", 0) for h in hospitals)
    wait_until(lambda: counted() >= expected_findings // 4, "a quarter of the findings counted")
    print(f"\nkill -9 with {counted()} of {expected_findings} findings counted, "
          f"{cut} of {len(log)} records published")
    stats_worker.kill9()  # mid-stream: table writes and offset commits are in flight

    send(producer, log[cut:])
    stats_worker.start()  # same app id: same consumer group, tables rebuilt from changelogs

    services = sorted({b["service"] for _, _, b in events} - {catalog.NOT_APPLICABLE_SERVICE})
    expected_latency = sum(1 for t, _, _ in events if t == topics.LATENCY.name)

    def latency_counted() -> int:
        total = 0
        for s in services:
            rows = stats_worker.get(
                f"/stats/windows?window=total&dimension=service&value={s}")["rows"]
            total += rows[0]["latency"]["end_to_end_s"]["count"] if rows else 0
        return total

    def caught_up() -> bool:
        return counted() >= expected_findings and latency_counted() >= expected_latency
    wait_until(caught_up, "the restarted worker to catch up")
    time.sleep(2.0)  # anything double-counted late would show up now

    # GET /stats: the v1 shape, exact for this run's hospitals and services.
    body = stats_worker.get("/stats")
    for dim, group in (("hospital", "hospitals"), ("service", "services")):
        for key in truth.counts:
            if key[0] == "total" and key[2] == dim and key[3] != catalog.NOT_APPLICABLE_SERVICE:
                want = truth.row(key)["counts"]
                assert body[group][key[3]] == {**want, "positive": want["positives"]}, key

    # GET /stats/windows: every row of this run's windows, counts and latency, exactly.
    mine = {lab for (w, lab, _, _) in truth.counts if w != "total"}
    for window in ("hour", "day", "week", "total"):
        for dim in ("city", "hospital", "device", "service", "finding"):
            got = stats_worker.get(f"/stats/windows?window={window}&dimension={dim}&limit=10000")
            assert got["window"] == window and got["dimension"] == dim
            starts = [r["start"] for r in got["rows"]]
            assert starts == sorted(starts, key=lambda s: s or "")
            if window == "total":
                rows = {(r["label"], r["value"]): r for r in got["rows"]
                        if r["value"] in {k[3] for k in truth.counts} - {"city", "none"}}
            else:
                rows = {(r["label"], r["value"]): r for r in got["rows"] if r["label"] in mine}
            want = {(lab, v): truth.row((w, lab, d, v)) for (w, lab, d, v) in truth.counts
                    if w == window and d == dim and (window != "total" or v not in
                                                     ("city", "none"))}
            assert {k: {"counts": r["counts"], "latency": r["latency"]}
                    for k, r in rows.items()} == want, (window, dim)

    # The snapshot topic got this run's numbers, schema-valid with CloudEvents headers.
    snap_key = f"total|total|hospital|{hospitals[0]}"
    want_counts = truth.row(("total", "total", "hospital", hospitals[0]))["counts"]
    found: dict[str, Any] = {}

    def snapshot_sent() -> bool:
        nonlocal found
        found = latest_snapshot(bootstrap, stats_low, snap_key)
        return bool(found) and found["body"]["counts"] == want_counts
    wait_until(snapshot_sent, f"a snapshot of {snap_key}", timeout_s=60)
    validate(EventKind.STATS_SNAPSHOT, found["body"])
    assert found["headers"]["ce_type"] == topics.STATS.event_type.encode()

    # The contract is served, and bad parameters get a 400 that names them.
    with urllib.request.urlopen(stats_worker.url + "/openapi.yaml", timeout=10) as resp:
        assert resp.read().startswith(b"openapi: 3.1")
    with pytest.raises(urllib.error.HTTPError) as err:
        stats_worker.get("/stats/windows?window=month&dimension=city")
    assert err.value.code == 400
    assert orjson.loads(err.value.read())["parameter"] == "window"


def test_seen_entries_are_forgotten_after_the_dedup_horizon(stats_worker: StatsWorker,
                                                            bootstrap: str) -> None:
    """Event time is the records' Kafka timestamps, set here: a copy of a Finding published
    within the horizon counts once, one published after the horizon counts again, and the seen
    entry's tombstone is on the changelog partition of its writes."""
    horizon_s = 60
    stats_worker.env["RADSTREAM_DEDUP_HORIZON_S"] = str(horizon_s)
    tag = uuid.uuid4().hex[:6]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    stats_worker.start()
    position(stats_worker, producer, tag)

    spec = dataclasses.replace(catalog.catalog()[0], id=f"t{tag}-h", findings=(
        FindingSpec(f"t{tag}_nodule", "Nodule", 0, "probe", threshold_override=0.5),))
    at = windows.rfc3339(datetime(2031, 1, 6, tzinfo=UTC) + timedelta(weeks=int(tag, 16) % 1500))
    assert at is not None

    def study_finding() -> dict[str, Any]:
        study = {"study_uid": f"2.25.{uuid.uuid4().int}", "hospital_id": f"X{tag}",
                 "device_id": f"X{tag}-d", "priority": "routine", "modality": "DX",
                 "body_part": "CHEST"}
        return finding_ok(study, spec, [0.9], at)

    t0 = time.time() + 600  # after every probe's timestamp: this test sets partition 0's clock
    partition = 0

    def publish(body: dict[str, Any], t: float) -> None:
        producer.produce(topics.FINDINGS.name, partition=partition,
                         key=body["study_uid"].encode(), value=orjson.dumps(body),
                         timestamp=int(t * 1000),
                         headers=list(ce_headers(topics.FINDINGS.event_type, "tests/horizon")))
        assert producer.flush(30) == 0

    def counted() -> int:
        rows = stats_worker.get(
            f"/stats/windows?window=total&dimension=service&value={spec.id}")["rows"]
        return rows[0]["counts"]["findings"] if rows else 0

    # One record at a time: a micro-batch stamps its seen entries with its last timestamp.
    first = study_finding()
    publish(first, t0)
    wait_until(lambda: counted() == 1, "the first finding counted")
    publish(first, t0 + horizon_s / 2)                  # a copy within the horizon
    time.sleep(2.0)
    assert counted() == 1
    for k, dt in enumerate((horizon_s + 1, horizon_s * 1.7)):  # others move event time on
        publish(study_finding(), t0 + dt)
        wait_until(lambda k=k: counted() == 2 + k, f"{2 + k} findings counted")
    publish(first, t0 + horizon_s * 1.8)                # a copy after the horizon
    wait_until(lambda: counted() == 4, "the late copy counted again")
    time.sleep(2.0)
    assert counted() == 4

    tombstones = changelog_tombstones(bootstrap, f"{stats_worker.app_id}-stats-findings-changelog")
    assert (partition, f"s|{first['study_uid']}") in tombstones


def changelog_tombstones(bootstrap: str, topic: str) -> set[tuple[int, str]]:
    """(partition, key) of every deletion on a table's changelog topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found: set[tuple[int, str]] = set()
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        consumer.assign(tps)
        read = {p: 0 for p in ends}
        deadline = time.monotonic() + 30
        while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1):
                if msg.error():
                    continue
                partition, offset, key = msg.partition(), msg.offset(), msg.key()
                assert partition is not None and offset is not None and key is not None
                read[partition] = offset + 1
                if msg.value() is None:
                    found.add((partition, orjson.loads(key)))
    finally:
        consumer.close()
    return found


def watermark(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topics.STATS.name, 0),
                                                  timeout=10)[1])
    finally:
        consumer.close()


def latest_snapshot(bootstrap: str, start: int, key: str) -> dict[str, Any]:
    """The last record with `key` on the stats topic from offset `start` on."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    found: dict[str, Any] = {}
    try:
        tp = TopicPartition(topics.STATS.name, 0)
        high = consumer.get_watermark_offsets(tp, timeout=10)[1]
        consumer.assign([TopicPartition(topics.STATS.name, 0, start)])
        position = start
        while position < high:
            msgs = consumer.consume(500, timeout=2)
            if not msgs:
                break
            for msg in msgs:
                if msg.error():
                    continue
                position = int(msg.offset() or 0) + 1
                if msg.key() == key.encode():
                    found = {"body": orjson.loads(msg.value() or b"{}"),
                             "headers": dict(msg.headers() or [])}
    finally:
        consumer.close()
    return found
