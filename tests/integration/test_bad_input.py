"""Bad input on the real pipeline: each case ends in the dead-letter topic with its precise
reason code, nothing is acknowledged without an outcome, and the worker keeps going."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from services.synth.city import generate_service_studies
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339
from streams.contract.schemas import EventKind, validate

from .conftest import Worker

pytestmark = pytest.mark.integration

HOSPITAL = "BADINPUT"


def announce(uid: str, uri: str) -> dict[str, Any]:
    now = utc_now_rfc3339()
    return {"study_uid": uid, "hospital_id": HOSPITAL, "device_id": "dev-1", "modality": "DX",
            "body_part": "CHEST", "priority": "urgent", "acquired_at": now, "published_at": now,
            "patient_ref": "ab" * 16,
            "series": [{"series_uid": uid + ".1", "modality": "DX", "body_part": "CHEST",
                        "instance_count": 1, "uri": uri}]}


def produce(bootstrap: str, items: list[tuple[str, bytes]]) -> None:
    """Raw records, as any hospital's Kafka client could send them (no validation)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in items:
        producer.produce(topics.STUDIES.name, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def test_each_bad_input_is_dead_lettered_with_its_reason(worker: Worker, bootstrap: str,
                                                         tmp_path: Path) -> None:
    # The worker reads a hospital's files only under <root>/<hospital_id>/.
    root = worker.root / HOSPITAL / f"bad-{uuid.uuid4().hex[:6]}"
    root.mkdir(parents=True)
    # A real study to copy and damage, and one to publish last to show the worker still works.
    truths = generate_service_studies(root / "good", 2, seed=7)
    good_file = truths[0].files[0]
    not_dicom = root / "not-dicom.dcm"
    not_dicom.write_bytes(b"this is not a DICOM file" * 100)
    truncated = root / "truncated.dcm"
    truncated.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    outside = tmp_path / "outside.dcm"  # a real DICOM file, but outside the configured root
    shutil.copy(good_file, outside)
    escape = root / "escape.dcm"
    escape.symlink_to(outside)

    cases: dict[str, tuple[bytes, str]] = {}

    def case(expected: str, body: bytes, key: str | None = None) -> None:
        cases[key or uid()] = (body, expected)

    case("invalid_json", b"{not json")
    case("invalid_json", b"")
    bad_schema = announce(uid(), good_file.as_uri())
    del bad_schema["patient_ref"]
    case("schema_violation", orjson.dumps(bad_schema), bad_schema["study_uid"])
    wrong_type = announce(uid(), good_file.as_uri())
    wrong_type["series"][0]["instance_count"] = "one"
    case("schema_violation", orjson.dumps(wrong_type), wrong_type["study_uid"])
    for expected, uri in [("file_missing", (root / "missing.dcm").as_uri()),
                          ("not_dicom", not_dicom.as_uri()),
                          ("dicom_truncated", truncated.as_uri()),
                          ("file_outside_root", outside.as_uri()),
                          ("file_outside_root", escape.as_uri()),
                          ("file_outside_root", "file:///etc/passwd"),
                          # Not a configured archive: refused before any request.
                          ("archive_not_allowed", "https://pacs.example/wado/1")]:
        body = announce(uid(), uri)
        case(expected, orjson.dumps(body), body["study_uid"])
    good = announce(uid(), truths[1].files[0].as_uri())

    outcomes = OutcomeReader(bootstrap).start()
    try:
        produce(bootstrap, [(k, body) for k, (body, _) in cases.items()])
        produce(bootstrap, [(good["study_uid"], orjson.dumps(good))])
        dead = outcomes.wait_for(topics.DEADLETTER, cases, len(cases), timeout_s=120)
        findings = outcomes.wait_for(topics.FINDINGS, [good["study_uid"]], 1, timeout_s=60)
        stray = outcomes.on(topics.FINDINGS, cases)
    finally:
        outcomes.close()

    # Sets of reasons: on a shared broker, other workers (other consumer groups, other DICOM
    # roots) may dead-letter the same records for their own reasons too.
    got: dict[str, set[str]] = {}
    for r in dead:
        got.setdefault(r.key, set()).add(r.body["reason"])
    assert {k: expected for k, (_, expected) in cases.items() if expected in got.get(k, ())} \
        == {k: expected for k, (_, expected) in cases.items()}
    assert stray == []  # a dead-lettered study never also gets a Finding
    for rec in dead:
        validate(EventKind.DEADLETTER, rec.body)
        assert rec.body["origin"]["topic"] in (topics.STUDIES.name,
                                               topics.work_topic("chest-xray").name,
                                               topics.work_topic("chest-xray", "priority").name)
        assert rec.headers["ce_type"] == topics.DEADLETTER.event_type.encode()
    # The worker is still alive and still produces findings after all of that.
    assert findings and {r.body["status"] for r in findings} == {"ok"}
    assert worker.proc.poll() is None
