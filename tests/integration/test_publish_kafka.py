"""Publishing to the real broker (`publish_path`, the CLI, plain kcat), read back by a consumer."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from pydicom.uid import generate_uid as pydicom_uid

from services.publisher import publish_path, register
from services.publisher.pseudonym import Pseudonymizer
from streams.contract.schemas import EventKind, validate
from streams.contract.topics import LIBRDKAFKA_PARTITIONER, STUDIES
from tests.unit.test_announce import PHI, write_instance
from tests.unit.test_publisher_hostile import write_hostile_headers

pytestmark = pytest.mark.integration

BOOTSTRAP = "127.0.0.1:9092"
KEY = b"integration-test-key-0123456789"


def generate_uid() -> str:
    """A short random UID (2.25.<uuid>), leaving room for suffixes under the 64-character cap."""
    return str(pydicom_uid(prefix=None))


def _consumer() -> Consumer:
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"test-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def end_offsets() -> dict[int, int]:
    """The high watermark of every partition of the studies topic, before we publish."""
    consumer = _consumer()
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(STUDIES.name, p), timeout=10)[1]
                for p in range(STUDIES.partitions)}
    finally:
        consumer.close()


def read_back(since: dict[int, int], keys: set[str], timeout: float = 30.0) -> dict[str, Message]:
    """The records with the given keys produced after the `since` offsets."""
    consumer = _consumer()
    consumer.assign([TopicPartition(STUDIES.name, p, off) for p, off in since.items()])
    found: dict[str, Message] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and set(found) != keys:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = (msg.key() or b"").decode()
            if key in keys:
                found[key] = msg
    finally:
        consumer.close()
    return found


def write_studies(root: Path, n: int) -> list[str]:
    uids = [generate_uid() for _ in range(n)]
    for uid in uids:
        write_instance(root, study_uid=uid, series_uid=generate_uid(), sop_uid=generate_uid())
    return uids


def test_published_studies_arrive_with_cloudevents_headers(tmp_path: Path) -> None:
    source, root = tmp_path / "export", tmp_path / "root"
    write_studies(source, 3)
    since = end_offsets()
    report = publish_path(source, root=root, hospital_id="H001", priority="urgent",
                          bootstrap=BOOTSTRAP, key=KEY, log=lambda _line: None)
    assert (report.delivered, report.failed, report.pending) == (3, 0, 0)
    assert (report.studies, report.series, report.instances, report.files) == (3, 3, 3, 3)
    uids = set(report.study_uids.values())

    found = read_back(since, uids)
    assert set(found) == uids
    for uid, msg in found.items():
        headers = dict(msg.headers() or [])
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_type"] == b"radiology.study.announced.v1"
        assert headers["ce_source"] == b"radstream/hospital/H001"
        assert headers["content-type"] == b"application/json"
        raw = msg.value() or b""
        body = orjson.loads(raw)
        validate(EventKind.STUDY_ANNOUNCED, body)
        assert body["study_uid"] == uid and body["priority"] == "urgent"
        assert not any(value.encode() in raw for value in PHI.values())
        # The URI names the staged copy under <root>/H001/, and the file is there.
        [series] = body["series"]
        staged = Path(series["uri"].removeprefix("file://"))
        assert staged.is_relative_to(root.resolve() / "H001" / uid) and staged.is_file()


def test_bad_files_are_counted_and_skipped_and_the_rest_is_published(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One unreadable header must not stop a run: every healthy study is still announced."""
    source, root = tmp_path / "export", tmp_path / "root"
    healthy = write_studies(source, 2)
    bad = write_hostile_headers(source / "broken")
    since = end_offsets()
    report = publish_path(source, root=root, hospital_id="H001", priority="routine",
                          bootstrap=BOOTSTRAP, key=KEY)
    assert (report.delivered, report.studies) == (len(healthy), len(healthy))
    assert set(report.study_uids) == set(healthy)
    assert sum(report.skipped_reasons.values()) == len(bad)
    assert set(read_back(since, set(report.study_uids.values()))) == set(
        report.study_uids.values())
    err = capsys.readouterr().err
    assert all(name in err for name in bad)  # the hospital's local log says which files


def test_cli_publishes_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    source, root = tmp_path / "export", tmp_path / "root"
    uids = write_studies(source, 2)
    (source / "notes.txt").write_text("not DICOM")
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["publish", str(source), "--bootstrap", BOOTSTRAP,
                              "--hospital-id", "H001", "--root", str(root)])
    since = end_offsets()
    assert args.func(args) == 0
    assert ("published 2 studies (2 series, 2 instances) from 3 files; "
            "1 non-DICOM files skipped") in capsys.readouterr().err
    keyed = {Pseudonymizer(KEY).uid(uid, hospital_id="H001") for uid in uids}
    assert set(read_back(since, keyed)) == keyed


def test_cli_reports_an_unreachable_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    write_studies(tmp_path, 1)
    monkeypatch.setenv("RADSTREAM_PSEUDONYM_KEY", KEY.hex())
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["publish", str(tmp_path), "--bootstrap", "127.0.0.1:1",
                              "--flush-timeout", "2", "--hospital-id", "H001",
                              "--root", str(tmp_path / "root")])
    assert args.func(args) == 1
    assert "error: 1 of 1 studies not delivered to 127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_plain_kcat_producer_follows_the_contract(tmp_path: Path) -> None:
    uid = generate_uid()
    event = {
        "study_uid": uid, "hospital_id": "H002", "device_id": "H002-D01", "modality": "DX",
        "body_part": "CHEST", "priority": "routine", "acquired_at": "2024-05-14T09:28:41Z",
        "published_at": "2024-05-14T09:30:02Z",
        "patient_ref": "0123456789abcdef0123456789abcdef",
        "series": [{"series_uid": f"{uid}.1", "modality": "DX", "body_part": "CHEST",
                    "instance_count": 1, "uri": (tmp_path / "1.dcm").as_uri()}],
    }
    line = orjson.dumps(event)
    validate(EventKind.STUDY_ANNOUNCED, event)
    since = end_offsets()
    partitioner = "partitioner=" + LIBRDKAFKA_PARTITIONER["partitioner"]
    subprocess.run(["kcat", "-P", "-b", BOOTSTRAP, "-X", partitioner, "-t", STUDIES.name,
                    "-k", uid],
                   input=line + b"\n", check=True, timeout=30)
    found = read_back(since, {uid})
    assert uid in found
    assert orjson.loads(found[uid].value() or b"") == event
