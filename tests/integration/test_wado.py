"""Studies in the city archive: a real Orthanc with its DICOMweb plugin (deploy/orthanc.sh),
studies stored into it by STOW-RS, announced with WADO-RS series URIs, and read by the real
worker from the archive (streams/imaging/wado.py). Also what the archive listens on."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from services.publisher.cli import build_announcements
from services.publisher.pseudonym import Pseudonymizer
from services.synth.city import generate_service_studies
from streams.contract import topics
from streams.contract.schemas import EventKind, validate

from .conftest import ORTHANC_HTTP_PORT, TEST_KEY, Worker

pytestmark = pytest.mark.integration

ORTHANC_DICOM_PORT = int(os.environ.get("RADSTREAM_ORTHANC_DICOM_PORT", "4242"))


def stow(archive: str, files: list[Path]) -> dict[str, Any]:
    """STOW-RS: POST the instances to <archive>/studies as one multipart/related request."""
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + f.read_bytes() + b"\r\n" for f in files)
    body += b"--" + boundary.encode() + b"--\r\n"
    request = urllib.request.Request(
        f"{archive}/studies", data=body, method="POST",
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={boundary}",
                 "Accept": "application/dicom+json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        answer: dict[str, Any] = orjson.loads(resp.read())
    # Orthanc always sends FailedSOPSequence (00081198): a failure is an item in it.
    assert not answer.get("00081198", {}).get("Value"), "the archive refused instances"
    assert len(answer["00081199"]["Value"]) == len(files)
    return answer


def archive_announcements(archive: str, folder: Path, hospital: str) -> list[dict[str, Any]]:
    """The publisher's validated announcements for the studies in ``folder``, each series' URI
    replaced by its WADO-RS URI in the archive (the archive's own UIDs; the events keep their
    keyed ones)."""
    found = build_announcements(folder, root=folder, hospital_id=hospital, priority="routine",
                                key=TEST_KEY.encode(), log=lambda _: None)
    keyed = Pseudonymizer(TEST_KEY.encode())
    events = []
    for event, study in zip(found.events, found.studies, strict=True):
        real = {keyed.uid(s.series_uid, hospital_id=hospital): s.series_uid for s in study.series}
        for series in event["series"]:
            series["uri"] = (f"{archive}/studies/{study.study_uid}/series/"
                             f"{real[series['series_uid']]}")
        validate(EventKind.STUDY_ANNOUNCED, event)
        events.append(event)
    return events


def produce(bootstrap: str, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for event in events:
        producer.produce(topics.STUDIES.name, key=event["study_uid"].encode(),
                         value=orjson.dumps(event))
    assert producer.flush(30) == 0


def test_studies_in_the_archive_are_read_by_wado_rs(worker: Worker, bootstrap: str,
                                                   orthanc: str, tmp_path: Path) -> None:
    hospital = f"W{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "archive-side"
    truths = generate_service_studies(folder / "xr", 1, seed=161) + \
        generate_service_studies(folder / "ct", 1, seed=162, service="chest-ct")
    for truth in truths:
        stow(orthanc, sorted(truth.files))
    good = archive_announcements(orthanc, folder, hospital)
    assert max(e["series"][0]["instance_count"] for e in good) > 1  # a multi-slice series

    # The same archive under another name (it would answer), a link-local metadata address,
    # and a series the archive does not have.
    bad = {}
    for reason, uri in [
            ("archive_not_allowed", good[0]["series"][0]["uri"].replace("127.0.0.1", "localhost")),
            ("archive_not_allowed", "http://169.254.169.254/dicom-web/studies/1.2/series/1.3"),
            ("series_not_found", f"{orthanc}/studies/1.2.3/series/{uuid.uuid4().int}")]:
        event = orjson.loads(orjson.dumps(good[0]))
        event["study_uid"] = f"2.25.{uuid.uuid4().int}"
        event["series"][0]["uri"] = uri
        bad[event["study_uid"]] = (event, reason)

    outcomes = OutcomeReader(bootstrap).start()
    try:
        produce(bootstrap, good + [e for e, _ in bad.values()])
        findings = outcomes.wait_for(topics.FINDINGS, [e["study_uid"] for e in good], len(good),
                                     timeout_s=180)
        dead = outcomes.wait_for(topics.DEADLETTER, bad, len(bad), timeout_s=120)
        stray = outcomes.on(topics.FINDINGS, bad)
    finally:
        outcomes.close()

    # Sets of outcomes: on a shared broker, other workers (other consumer groups, no archive
    # configured) may dead-letter the same studies for their own reasons too.
    ok = {(r.key, r.body["service"]) for r in findings if r.body["status"] == "ok"}
    assert ok == {(e["study_uid"], t.service) for e, t in zip(
        sorted(good, key=lambda e: e["series"][0]["instance_count"]),
        sorted(truths, key=lambda t: t.instance_count), strict=True)}
    for rec in findings:
        validate(EventKind.FINDING, rec.body)
    got: dict[str, set[str]] = {}
    for r in dead:
        validate(EventKind.DEADLETTER, r.body)
        got.setdefault(r.key, set()).add(r.body["reason"])
    assert {k: reason for k, (_, reason) in bad.items() if reason in got.get(k, ())} == \
        {k: reason for k, (_, reason) in bad.items()}
    assert stray == []


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(address)
    return found


def _non_loopback_address() -> str | None:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return next((a for a in out if "." in a and not a.startswith("127.")), None)


def test_the_archive_answers_loopback_only(orthanc: str) -> None:
    """Orthanc 1.10 has no bind address: HTTP and DICOM listen on every interface. HTTP refuses
    any client but loopback (RemoteAccessAllowed false); the DICOM listener accepts only the
    one configured modality, calling AE RADSTREAM_SCU from 127.0.0.1 (deploy/orthanc/)."""
    everywhere = {"00000000", "00000000000000000000000000000000"}
    # What it listens on, measured: if a later Orthanc binds loopback only, this says so.
    assert _listening(ORTHANC_HTTP_PORT) & everywhere
    assert _listening(ORTHANC_DICOM_PORT) & everywhere
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call the archive from")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{address}:{ORTHANC_HTTP_PORT}/system", timeout=5)
    assert err.value.code in (401, 403)
    with urllib.request.urlopen(f"http://127.0.0.1:{ORTHANC_HTTP_PORT}/system", timeout=5) as r:
        assert r.status == 200

    def echo(host: str, calling: str) -> int:
        return subprocess.run(["echoscu", "-to", "5", "-aec", "RADSTREAM", "-aet", calling,
                               host, str(ORTHANC_DICOM_PORT)], capture_output=True).returncode

    assert echo("127.0.0.1", "RADSTREAM_SCU") == 0
    assert echo(address, "RADSTREAM_SCU") != 0   # the right AE from another address
    assert echo("127.0.0.1", "SOMEONE") != 0     # another AE from loopback
