"""Per-hospital intake topics on the real pipeline: a hospital's own study goes through the gate
to a Finding; a study claiming another hospital is dead-lettered with `hospital_mismatch`."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from services.synth.city import generate_service_studies
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339

from .conftest import INTAKE_TEST_HOSPITAL, INTAKE_TEST_TOPIC, Worker

pytestmark = pytest.mark.integration


def announce(uid: str, hospital: str, path: Path) -> bytes:
    now = utc_now_rfc3339()
    return orjson.dumps({
        "study_uid": uid, "hospital_id": hospital, "device_id": "dev-1", "modality": "DX",
        "body_part": "CHEST", "priority": "routine", "acquired_at": now, "published_at": now,
        "patient_ref": "cd" * 16,
        "series": [{"series_uid": uid + ".1", "modality": "DX", "body_part": "CHEST",
                    "instance_count": 1, "uri": path.as_uri()}]})


def test_intake_gate_forwards_own_studies_and_rejects_impersonation(worker: Worker,
                                                                     bootstrap: str) -> None:
    # The worker reads a hospital's files only under <root>/<hospital_id>/.
    folder = worker.root / INTAKE_TEST_HOSPITAL / f"intake-{uuid.uuid4().hex[:6]}"
    truths = generate_service_studies(folder, 1, seed=11)
    own, forged = f"2.25.{uuid.uuid4().int}", f"2.25.{uuid.uuid4().int}"
    reader = OutcomeReader(bootstrap).start()
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        path = truths[0].files[0]
        producer.produce(INTAKE_TEST_TOPIC, key=own.encode(),
                         value=announce(own, INTAKE_TEST_HOSPITAL, path))
        producer.produce(INTAKE_TEST_TOPIC, key=forged.encode(),
                         value=announce(forged, "SOMEONE-ELSE", path))
        assert producer.flush(30) == 0
        findings = reader.wait_for(topics.FINDINGS, [own], 1, timeout_s=120)
        dead = reader.wait_for(topics.DEADLETTER, [forged], 1, timeout_s=60)
    finally:
        reader.close()
    assert [f.body["hospital_id"] for f in findings] == [INTAKE_TEST_HOSPITAL]
    assert [d.body["reason"] for d in dead] == ["hospital_mismatch"]
    assert dead[0].body["origin"]["topic"] == INTAKE_TEST_TOPIC
    assert reader.on(topics.FINDINGS, [forged]) == []
