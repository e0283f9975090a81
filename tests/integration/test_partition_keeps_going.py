"""A study the worker stumbles on must not stop its partition (issue 15, defect 1).

A study whose timestamps use RFC 3339's lower-case `t` and `z` (the schema accepts them) made
the inference agent raise after it had sent the batch's Findings: the batch was never
acknowledged, the consumer group's offset stayed behind it, and every redelivery repeated it.
Here such a study and a normal one, on the same partition of the work topic, go through the
real worker: both get their outcome, the odd one exactly one Finding, and the worker's committed
offset passes both."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, Producer, TopicPartition

from services.ops.follow import OutcomeReader
from services.synth.city import generate_service_studies
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339

from .conftest import Worker

pytestmark = pytest.mark.integration

WORK = topics.work_topic("chest-xray")


def worker_partition(key: str, partitions: int) -> int:
    """Where the worker's producer (aiokafka, murmur2) puts a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def uid_on(partition: int) -> str:
    while True:
        uid = f"2.25.{uuid.uuid4().int}"
        if worker_partition(uid, WORK.partitions) == partition:
            return uid


def announce(uid: str, hospital: str, uri: str, at: str) -> dict[str, Any]:
    return {"study_uid": uid, "hospital_id": hospital, "device_id": "dev-1", "modality": "DX",
            "body_part": "CHEST", "priority": "routine", "acquired_at": at, "published_at": at,
            "patient_ref": "cd" * 16,
            "series": [{"series_uid": uid + ".1", "modality": "DX", "body_part": "CHEST",
                        "instance_count": 1, "uri": uri}]}


def worker_group(worker: Worker) -> str:
    env = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in env
                if e.startswith(b"RADSTREAM_APP_ID="))


def work_item_offset(bootstrap: str, partition: int, start: int, key: str,
                     timeout_s: float = 60) -> int:
    """The offset of the work item the worker's router made for `key`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(WORK.name, partition, start)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            offset = None if msg is None or msg.error() else msg.offset()
            if offset is not None and msg is not None and msg.key() == key.encode():
                return offset
        raise AssertionError(f"no work item for {key} on {WORK.name}[{partition}]")
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(WORK.name, partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def test_a_study_with_lower_case_timestamps_does_not_stop_its_partition(
        worker: Worker, bootstrap: str) -> None:
    hospital = f"R{uuid.uuid4().hex[:8]}"  # a hospital's files live in its own folder
    truths = generate_service_studies(worker.root / hospital, 2, seed=15)
    partition = 0
    odd_uid, normal_uid = uid_on(partition), uid_on(partition)
    now = utc_now_rfc3339()
    odd = announce(odd_uid, hospital, truths[0].files[0].as_uri(),
                   now.replace("T", "t").lower())
    normal = announce(normal_uid, hospital, truths[1].files[0].as_uri(), now)
    assert "t" in odd["published_at"] and odd["published_at"].endswith("z")

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    start = probe.get_watermark_offsets(TopicPartition(WORK.name, partition), timeout=10)[1]
    probe.close()
    outcomes = OutcomeReader(bootstrap).start()
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                             **topics.LIBRDKAFKA_PARTITIONER})
        for body in (odd, normal):  # in this order: the normal study comes after the odd one
            producer.produce(topics.STUDIES.name, key=body["study_uid"].encode(),
                             value=orjson.dumps(body))
            assert producer.flush(30) == 0
        # Findings, not just any outcome: on a shared broker other deployments' workers
        # dead-letter these studies (their DICOM roots are elsewhere).
        outcomes.wait_for(topics.FINDINGS, [odd_uid, normal_uid], 2, timeout_s=120)
        offset = work_item_offset(bootstrap, partition, start, odd_uid)
        # The batch is acknowledged: the group's offset passes the odd study's work item.
        group = worker_group(worker)
        deadline = time.monotonic() + 60
        while committed(bootstrap, group, partition) <= offset:
            assert time.monotonic() < deadline, (
                f"the worker's offset on {WORK.name}[{partition}] stays at its batch")
            time.sleep(1)
        outcomes.poll(3)  # a redelivery would show as a second Finding
        findings = outcomes.on(topics.FINDINGS, [odd_uid, normal_uid])
    finally:
        outcomes.close()
    assert sorted(r.key for r in findings) == sorted([odd_uid, normal_uid])
    assert {r.body["status"] for r in findings} == {"ok"}
    assert worker.proc.poll() is None
