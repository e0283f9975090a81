"""Readiness probe for a worker that starts at the end of the studies topic.

A new consumer group with `auto.offset.reset=latest` reads only what is published after it has
positioned itself on each partition. Until then a study could fall before its start offset, so
the probe sends one harmless study per partition (no AI service applies to it) and waits until
every partition has answered with a not_applicable Finding.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339

PROBE_HOSPITAL = "PROBE"


def probe_study(uid: str) -> dict[str, Any]:
    now = utc_now_rfc3339()
    return {"study_uid": uid, "hospital_id": PROBE_HOSPITAL, "device_id": "probe",
            "modality": "OT", "body_part": "PROBE", "priority": "routine", "acquired_at": now,
            "published_at": now, "patient_ref": "0" * 32,
            "series": [{"series_uid": uid + ".1", "modality": "OT", "body_part": "PROBE",
                        "instance_count": 1, "uri": "file:///dev/null"}]}


def wait_until_positioned(bootstrap: str, timeout_s: float = 120.0) -> None:
    reader = OutcomeReader(bootstrap, (topics.FINDINGS,)).start()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    pending = set(range(topics.STUDIES.partitions))
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            sent: dict[str, int] = {}
            for p in pending:
                uid = f"2.25.{uuid.uuid4().int}"
                sent[uid] = p
                producer.produce(topics.STUDIES.name, key=uid.encode(), partition=p,
                                 value=orjson.dumps(probe_study(uid)))
            producer.flush(10)
            reader.poll(2.0)
            pending -= {sent[r.key] for r in reader.on(topics.FINDINGS, sent)}
    finally:
        reader.close()
    if pending:
        raise TimeoutError(f"worker did not answer probes on partitions {sorted(pending)} "
                           f"within {timeout_s:.0f}s")
