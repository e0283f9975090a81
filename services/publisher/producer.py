"""The hospital side's Kafka producer for StudyAnnounced events (thin adapter over librdkafka).

Idempotent, `acks=all`: a retried send never duplicates a record in the log. Every event is
validated against the contract before it is sent, so a hospital cannot put an invalid event on
the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.contract.cloudevents import ce_headers
from streams.contract.schemas import EventKind, validate
from streams.contract.topics import LIBRDKAFKA_PARTITIONER, STUDIES
from streams.kafka.security import KafkaSecurity
from streams.rules.origin import intake_topic

#: librdkafka's own log lines (one per failed connect, …) go here: quiet unless the application
#: configures logging; the publisher reports the last broker error itself.
librdkafka_log = logging.getLogger(f"{__name__}.librdkafka")
librdkafka_log.addHandler(logging.NullHandler())

#: Seconds to wait for queue space when librdkafka's local queue is full.
_BUFFER_WAIT_S = 0.1


@dataclass(frozen=True)
class PublishReport:
    """Outcome of a publishing run; `pending` were neither acknowledged nor failed in time."""

    delivered: int
    failed: int
    pending: int = 0
    #: Filled by `publish_path`: what was found on disk and announced.
    studies: int = 0
    series: int = 0
    instances: int = 0
    files: int = 0
    skipped_files: int = 0
    #: Skipped files by reason code (not_dicom, dicom_truncated, ...); see scan.ScanStats.
    skipped_reasons: Mapping[str, int] = field(default_factory=dict)
    #: Studies not sent: invalid against the schema, a file outside the published folder, or
    #: files that could not be staged.
    rejected: int = 0
    #: Each announced study's own StudyInstanceUID -> the keyed UID on the bus. Hospital-side
    #: knowledge (it links the bus to the hospital's records): never log or publish it.
    study_uids: Mapping[str, str] = field(default_factory=dict)
    #: The last broker or delivery error seen, for the one-line report ("" if none).
    last_error: str = ""

    @property
    def not_delivered(self) -> int:
        return self.failed + self.pending

    @property
    def ok(self) -> bool:
        return self.not_delivered == 0 and self.rejected == 0


def source_for(hospital_id: str) -> str:
    """CloudEvents `source` of a hospital's announcements."""
    return f"radstream/hospital/{hospital_id}"


def _config(bootstrap: str, compression: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "radstream-publisher",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": compression,
        **LIBRDKAFKA_PARTITIONER,
        **(extra or {}),
    }


class StudyPublisher:
    """Publishes StudyAnnounced bodies to `radiology.studies.v1`, keyed by study UID.

    Use as a context manager, or call `flush` yourself before dropping it.
    """

    def __init__(self, bootstrap: str, *, config: dict[str, Any] | None = None,
                 security: KafkaSecurity | None = None, intake: bool | None = None) -> None:
        """`security` defaults to the RADSTREAM_KAFKA_* environment (PLAINTEXT when unset).
        `intake` sends each event to its hospital's own topic, `radiology.intake.<id>.v1`, the
        only one a hospital may write on a secured cluster; default: on when security is."""
        security = KafkaSecurity.from_env() if security is None else security
        self.intake = security.enabled if intake is None else intake
        config = {**security.librdkafka(), **(config or {})}
        self.delivered = 0
        self.failed = 0
        #: The last broker-level error (e.g. all brokers down), for a one-line report.
        self.last_error: str | None = None
        self.compression = "lz4"
        try:
            self._producer = Producer(self._with_callbacks(_config(bootstrap, "lz4", config)))
        except KafkaException as exc:
            # A librdkafka built without LZ4 rejects the codec; send uncompressed instead.
            if "compression" not in str(exc):
                raise
            self.compression = "none"
            self._producer = Producer(self._with_callbacks(_config(bootstrap, "none", config)))

    def _with_callbacks(self, conf: dict[str, Any]) -> dict[str, Any]:
        return {**conf, "error_cb": self._on_error, "logger": librdkafka_log}

    def _on_error(self, error: KafkaError) -> None:
        self.last_error = error.str()

    def _on_delivery(self, error: KafkaError | None, _msg: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = error.str()

    def publish(self, event: dict[str, Any]) -> None:
        """Validate and queue one event; raises SchemaViolation for an invalid body."""
        validate(EventKind.STUDY_ANNOUNCED, event)
        body = orjson.dumps(event)
        key = str(event["study_uid"]).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            *ce_headers(STUDIES.event_type, source=source_for(event["hospital_id"]))]
        topic = intake_topic(event["hospital_id"]) if self.intake else STUDIES.name
        while True:
            try:
                self._producer.produce(topic, value=body, key=key, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(_BUFFER_WAIT_S)
        self._producer.poll(0)

    def flush(self, timeout: float) -> PublishReport:
        """Wait up to `timeout` seconds for every queued event to be acknowledged."""
        pending = self._producer.flush(timeout)
        return PublishReport(delivered=self.delivered, failed=self.failed, pending=pending,
                             last_error=self.last_error or "")

    def __enter__(self) -> StudyPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush(30.0 if exc_type is None else 5.0)
