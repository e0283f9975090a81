"""Running agents' batch functions without Faust or a broker: a list-backed Sink, events built
from Faust's own Message type, a named dict for tables, and valid contract bodies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import orjson
from faust.types.tuples import Message
from prometheus_client import CollectorRegistry

from streams.agents.outcomes import Headers, contract_type
from streams.contract import topics
from streams.metrics import Metrics, create_metrics

#: Every topic an Outbox can reach in a worker (contract topics, work lanes).
KNOWN_TOPICS = frozenset(t.name for t in topics.all_topics())


@dataclass
class Sent:
    topic: str
    key: str
    #: The body of a contract event, or the bytes of a forwarded record.
    value: dict[str, Any] | bytes
    headers: Headers | None
    #: Whether a flush() followed the send (what the Outbox waits for before an ack).
    flushed: bool = False

    @property
    def body(self) -> dict[str, Any]:
        assert isinstance(self.value, dict), f"{self.topic} carried raw bytes"
        return self.value


@dataclass
class ListSink:
    """A Sink that keeps what it is given, checking contract events as the Outbox does."""

    sent: list[Sent] = field(default_factory=list)
    flushes: int = 0

    async def send(self, topic: str, key: str, body: Any) -> None:
        contract_type(topic, body)  # raises on a body the contract refuses, like the Outbox
        self.sent.append(Sent(topic, key, orjson.loads(orjson.dumps(body)), None))

    async def forward(self, topic: str, key: str, value: bytes,
                      headers: Headers | None = None) -> None:
        assert topic in KNOWN_TOPICS, f"no such topic: {topic}"
        self.sent.append(Sent(topic, key, value, headers))

    async def flush(self) -> None:
        self.flushes += 1
        for s in self.sent:
            s.flushed = True

    def on(self, spec: topics.TopicSpec | str) -> list[Sent]:
        name = spec if isinstance(spec, str) else spec.name
        return [s for s in self.sent if s.topic == name]

    def deadletters(self) -> list[dict[str, Any]]:
        return [s.body for s in self.on(topics.DEADLETTER)]

    @property
    def all_flushed(self) -> bool:
        return all(s.flushed for s in self.sent)


class MemoryTable(dict[Any, Any]):
    """A table in a dict, named like the Faust table it stands for."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


@dataclass(eq=False)
class FakeEvent:
    """What batch functions read of a Faust event: its message."""

    message: Message


def event(topic: str, value: bytes | None, *, partition: int = 0, offset: int = 0,
          key: bytes | None = None, headers: Headers | None = None,
          timestamp: float = 1_796_371_200.0) -> faust.EventT:
    message = Message(topic, partition, offset, timestamp, 0, headers or [], key, value, None)
    return cast(faust.EventT, FakeEvent(message))


@dataclass
class Probe:
    """A worker's metrics in a registry of their own, read back as Prometheus would."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.metrics: Metrics = create_metrics(self.registry)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def study_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def announcement(uid: str, *, hospital_id: str = "H001", modality: str = "DX",
                 body_part: str = "CHEST", priority: str = "routine",
                 at: str = "2026-12-04T10:00:00Z", uri: str = "file:///data/a.dcm",
                 **extra: Any) -> dict[str, Any]:
    """A StudyAnnounced body the contract accepts (a pseudonymous patient_ref, no PHI)."""
    return {"study_uid": uid, "hospital_id": hospital_id, "device_id": "DEV-01",
            "modality": modality, "body_part": body_part, "priority": priority,
            "acquired_at": at, "published_at": at, "patient_ref": "ab" * 16,
            "series": [{"series_uid": uid + ".1", "modality": modality, "body_part": body_part,
                        "instance_count": 1, "uri": uri}], **extra}
