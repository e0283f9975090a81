"""Test-side Kafka helpers: produce raw records, follow outcome topics, probe the worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streams import topics
from streams.cloudevents import utc_now_rfc3339


@dataclass
class Record:
    topic: str
    key: str
    headers: dict[str, bytes]
    body: dict[str, Any]


@dataclass
class Outcomes:
    """Everything seen on the outcome topics since `start()`."""

    bootstrap: str
    records: list[Record] = field(default_factory=list)
    _consumer: Consumer | None = None

    def start(self) -> Outcomes:
        self._consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                   "group.id": f"test-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False})
        parts = []
        for spec in (topics.FINDINGS, topics.LATENCY, topics.DEADLETTER):
            for p in range(spec.partitions):
                tp = TopicPartition(spec.name, p)
                _, high = self._consumer.get_watermark_offsets(tp, timeout=10)
                parts.append(TopicPartition(spec.name, p, high))
        self._consumer.assign(parts)
        return self

    def poll(self, seconds: float) -> None:
        assert self._consumer is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._consumer.consume(1000, timeout=0.2):
                raw_key, value = msg.key(), msg.value()
                if msg.error() or not isinstance(value, bytes):
                    continue
                key = raw_key.decode() if isinstance(raw_key, bytes) else ""
                headers: dict[str, bytes] = {}
                for name, header in cast(list[tuple[str, Any]], msg.headers() or []):
                    if isinstance(header, bytes):
                        headers[name] = header
                self.records.append(Record(str(msg.topic()), key, headers, orjson.loads(value)))

    def on(self, spec: topics.TopicSpec, keys: Iterable[str] | None = None) -> list[Record]:
        wanted = set(keys) if keys is not None else None
        return [r for r in self.records
                if r.topic == spec.name and (wanted is None or r.key in wanted)]

    def wait_for(self, spec: topics.TopicSpec, keys: Iterable[str], count: int,
                 timeout_s: float) -> list[Record]:
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.on(spec, wanted)) >= count:
                break
            self.poll(0.5)
        self.poll(1.0)  # anything late (a duplicate would show up here)
        return self.on(spec, wanted)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def produce(bootstrap: str, items: Iterable[tuple[str, bytes]], *,
            partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    for key, value in items:
        if partition is None:
            producer.produce(topics.STUDIES.name, key=key.encode(), value=value)
        else:
            producer.produce(topics.STUDIES.name, key=key.encode(), value=value,
                             partition=partition)
    assert producer.flush(30) == 0


def probe_study(uid: str) -> dict[str, Any]:
    """A valid study no AI service applies to: the worker answers it with not_applicable."""
    now = utc_now_rfc3339()
    return {"study_uid": uid, "hospital_id": "PROBE", "device_id": "probe", "modality": "MR",
            "body_part": "KNEE", "priority": "routine", "acquired_at": now, "published_at": now,
            "patient_ref": "0" * 32,
            "series": [{"series_uid": uid + ".1", "modality": "MR", "body_part": "KNEE",
                        "instance_count": 1, "uri": "file:///nonexistent/probe.dcm"}]}


def probe_worker(bootstrap: str, timeout_s: float) -> None:
    """Wait until the worker answers a probe on every partition of the studies topic, so a test
    publishing afterwards knows none of its studies falls before the worker's start offsets."""
    outcomes = Outcomes(bootstrap).start()
    pending = set(range(topics.STUDIES.partitions))
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            sent: dict[str, int] = {}
            for p in pending:
                uid = f"2.25.{uuid.uuid4().int}"
                sent[uid] = p
                produce(bootstrap, [(uid, orjson.dumps(probe_study(uid)))], partition=p)
            outcomes.poll(3.0)
            for rec in outcomes.on(topics.FINDINGS, sent):
                pending.discard(sent[rec.key])
    finally:
        outcomes.close()
    if pending:
        raise TimeoutError(f"worker never answered probes on partitions {sorted(pending)}")
