"""Follows the outcome topics (Findings, Latency, DeadLetters) for a known set of studies."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from streams import topics


@dataclass
class OutcomeLog:
    findings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    latencies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deadletters: list[dict[str, Any]] = field(default_factory=list)

    def resolved(self, study_uids: set[str]) -> int:
        """Studies with an outcome: a Finding, or a DeadLetter keyed by the study."""
        dead = {d.get("key") for d in self.deadletters}
        return sum(1 for s in study_uids if s in self.findings or s in dead)


class OutcomeFollower:
    """Background consumer that starts at the topics' current end (only new outcomes count)."""

    def __init__(self, bootstrap: str) -> None:
        self.log = OutcomeLog()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"radstream-follow-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "latest",
        })
        names = [topics.FINDINGS.name, topics.LATENCY.name, topics.DEADLETTER.name]
        parts = []
        for name in names:
            md = self._consumer.list_topics(name, timeout=10).topics[name]
            for p in md.partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                parts.append(TopicPartition(name, p, high if high >= 0 else OFFSET_END))
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, name="outcome-follower", daemon=True)

    def start(self) -> OutcomeFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, timeout=0.2):
                value = msg.value()
                if msg.error() or not isinstance(value, bytes):
                    continue
                body = orjson.loads(value)
                with self._lock:
                    if msg.topic() == topics.FINDINGS.name:
                        self.log.findings.setdefault(body["study_uid"], []).append(body)
                    elif msg.topic() == topics.LATENCY.name:
                        self.log.latencies.setdefault(body["study_uid"], []).append(body)
                    else:
                        self.log.deadletters.append(body)
        self._consumer.close()

    def snapshot(self) -> OutcomeLog:
        with self._lock:
            return OutcomeLog({k: list(v) for k, v in self.log.findings.items()},
                              {k: list(v) for k, v in self.log.latencies.items()},
                              list(self.log.deadletters))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
