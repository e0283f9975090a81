"""Studies in, Findings out: the benchmark's load generator and its outcome collector.

Studies reuse a small pool of real DICOM files under fresh study UIDs, so a 10,000-study run
writes no extra files. The collector reads the Findings topic from its end and times each study
from the moment the benchmark sent its announcement to the Finding's Kafka timestamp (the
producer's create time), the same clock for every scenario.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from services.synth.city import CITY_TRUTH_FILE, generate_service_studies, load_city_truth
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339

#: Hospital id on every benchmark study: the city statistics can tell them apart.
BENCH_HOSPITAL = "BENCH"


def image_pool(folder: Path, size: int) -> list[Path]:
    """`size` synthetic chest X-ray DICOM files, written once and reused by later runs (the
    city's truth file says what a folder holds, so files of another generator are not reused)."""
    if (folder / CITY_TRUTH_FILE).is_file():
        truths = load_city_truth(folder)
        if len(truths) >= size:
            return [t.files[0] for t in truths[:size]]
    truths = generate_service_studies(folder, size, seed=6006)
    return [t.files[0] for t in truths]


def announcement(uid: str, image: Path, priority: str = "routine") -> bytes:
    """One StudyAnnounced body for `image` under a fresh study UID."""
    now = utc_now_rfc3339()
    body = {"study_uid": uid, "hospital_id": BENCH_HOSPITAL, "device_id": "BENCH-D01",
            "modality": "DX", "body_part": "CHEST", "priority": priority,
            "acquired_at": now, "published_at": now, "patient_ref": uuid.uuid4().hex,
            "series": [{"series_uid": uid + ".1", "modality": "DX", "body_part": "CHEST",
                        "instance_count": 1, "uri": image.as_uri()}]}
    return orjson.dumps(body)


def fresh_uids(n: int) -> list[str]:
    return [f"2.25.{uuid.uuid4().int}" for _ in range(n)]


def high_watermarks(bootstrap: str, spec: topics.TopicSpec) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        return [TopicPartition(spec.name, p,
                               consumer.get_watermark_offsets(TopicPartition(spec.name, p),
                                                              timeout=10)[1])
                for p in range(spec.partitions)]
    finally:
        consumer.close()


def start_group_at_end(bootstrap: str, group: str, specs: Sequence[topics.TopicSpec]) -> None:
    """Commit `group`'s offsets at the current end of `specs`, so a worker joining that group
    later reads exactly what is published from now on: a backlog published before it starts is
    drained from its first study, and the shared topics' history is skipped."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        offsets = [tp for spec in specs for tp in high_watermarks(bootstrap, spec)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


@dataclass
class Sent:
    """When each study's announcement left the benchmark (wall clock, seconds)."""

    at: dict[str, float] = field(default_factory=dict)


def publish(bootstrap: str, uids: Sequence[str], pool: Sequence[Path], sent: Sent, *,
            rate_per_s: float | None = None, stop: threading.Event | None = None,
            priority: str = "routine") -> None:
    """Announce `uids` round-robin over the image pool: as fast as possible, or paced."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                         "enable.idempotence": True, **topics.LIBRDKAFKA_PARTITIONER})
    start = time.monotonic()
    for i, uid in enumerate(uids):
        if stop is not None and stop.is_set():
            break
        if rate_per_s:
            # Sleep, not poll(delay): poll returns early whenever a delivery report is served.
            delay = start + i / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        body = announcement(uid, pool[i % len(pool)], priority)
        sent.at[uid] = time.time()
        while True:
            try:
                producer.produce(topics.STUDIES.name, key=uid.encode(), value=body)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("benchmark publisher could not deliver every study")


@dataclass
class Outcome:
    """What came back for the studies of one scenario."""

    finished_at: dict[str, float] = field(default_factory=dict)
    deadletters: int = 0
    duplicates: int = 0


class Collector:
    """Reads Findings and DeadLetters from the end of their topics (positioned at creation)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap,
                                   "group.id": f"bench-collector-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "log_level": 2})
        self._consumer.assign(high_watermarks(bootstrap, topics.FINDINGS)
                              + high_watermarks(bootstrap, topics.DEADLETTER))

    def wait(self, wanted: set[str], timeout_s: float, outcome: Outcome,
             on_tick: Callable[[Outcome], None] | None = None) -> Outcome:
        """Read until every study in `wanted` has an outcome, or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (
                len(outcome.finished_at) + outcome.deadletters < len(wanted)):
            for msg in self._consumer.consume(2000, timeout=0.2):
                if msg.error():
                    continue
                raw = msg.key()
                key = raw.decode() if isinstance(raw, bytes) else ""
                if key not in wanted:
                    continue
                if msg.topic() == topics.DEADLETTER.name:
                    outcome.deadletters += 1
                elif key in outcome.finished_at:
                    outcome.duplicates += 1
                else:
                    outcome.finished_at[key] = msg.timestamp()[1] / 1000.0
            if on_tick is not None:
                on_tick(outcome)
        return outcome

    def close(self) -> None:
        self._consumer.close()
