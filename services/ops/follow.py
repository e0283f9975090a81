"""Reading outcome topics (Findings, Latency, DeadLetters) from their current end.

Used by the demo to show progress and by the integration tests to collect what the pipeline
produced: only records published after `start()` are seen.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, TopicPartition

from streams.contract import topics

OUTCOME_TOPICS = (topics.FINDINGS, topics.LATENCY, topics.DEADLETTER)


@dataclass
class Record:
    topic: str
    key: str
    headers: dict[str, bytes]
    body: dict[str, Any]


@dataclass
class OutcomeReader:
    bootstrap: str
    specs: Sequence[topics.TopicSpec] = OUTCOME_TOPICS
    records: list[Record] = field(default_factory=list)
    _consumer: Consumer | None = None

    def start(self, *, from_beginning: bool = False) -> OutcomeReader:
        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"radstream-reader-{uuid.uuid4().hex}",
                             "enable.auto.commit": False,
                             # An observer: a broker restart is expected, not worth a log line
                             # per reconnect attempt.
                             "log_level": 2})
        parts = []
        for spec in self.specs:
            for p in range(spec.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(spec.name, p),
                                                           timeout=10)
                parts.append(TopicPartition(spec.name, p, low if from_beginning else high))
        consumer.assign(parts)
        self._consumer = consumer
        return self

    def poll(self, seconds: float) -> None:
        """Read for about `seconds` (0: only what is already fetched)."""
        if self._consumer is None:
            raise RuntimeError("OutcomeReader.start() was not called")
        deadline = time.monotonic() + seconds
        while True:
            for msg in self._consumer.consume(1000, timeout=min(0.2, max(0.0, seconds))):
                raw_key, value = msg.key(), msg.value()
                if msg.error() or not isinstance(value, bytes):
                    continue
                headers: dict[str, bytes] = {}
                for name, header in cast(list[tuple[str, Any]], msg.headers() or []):
                    if isinstance(header, bytes):
                        headers[name] = header
                key = raw_key.decode() if isinstance(raw_key, bytes) else ""
                self.records.append(Record(str(msg.topic()), key, headers, orjson.loads(value)))
            if time.monotonic() >= deadline:
                return

    def on(self, spec: topics.TopicSpec, keys: Iterable[str] | None = None) -> list[Record]:
        wanted = set(keys) if keys is not None else None
        return [r for r in self.records
                if r.topic == spec.name and (wanted is None or r.key in wanted)]

    def resolved(self, keys: Iterable[str]) -> set[str]:
        """Keys with an outcome: a Finding or a DeadLetter."""
        wanted = set(keys)
        return {r.key for r in self.records if r.key in wanted
                and r.topic in (topics.FINDINGS.name, topics.DEADLETTER.name)}

    def wait_for(self, spec: topics.TopicSpec, keys: Iterable[str], count: int,
                 timeout_s: float, *, settle_s: float = 1.0) -> list[Record]:
        """Read until `count` records for `keys` arrived on `spec` (or timeout), then a little
        longer so that a duplicate, if the pipeline made one, is seen too."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.on(spec, wanted)) < count:
            self.poll(0.5)
        self.poll(settle_s)
        return self.on(spec, wanted)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
