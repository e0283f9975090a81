"""No patient data leaves the hospital side: studies carrying planted PHI (names, IDs, birth
dates, accession numbers, an address; in the free-text tags the publisher reads, in the DICOM
UIDs and in the hospital's folder names) go through the real publisher, broker, worker and
Triton, and afterwards no trace of any planted value, in any common format, is found in any
topic's keys, payloads or headers, in the worker's changelogs, its log, /metrics or the HTTP API
(the device and hospital statistics included)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import cast

import pydicom
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pydicom.uid import UID

from services.ops.follow import OutcomeReader
from services.publisher import publish_path
from services.synth.city import generate_service_studies
from streams.contract import topics

from .conftest import TEST_KEY, Worker

pytestmark = pytest.mark.integration

BIRTH_DATES = ("19230417", "19311129", "19470203")
#: Paths served by the worker's HTTP API that may exist (404s are skipped).
API_PATHS = ("/stats", "/stats/windows", "/quality", "/dashboard", "/",
             "/stats/windows?window=total&dimension=device",
             "/stats/windows?window=total&dimension=hospital")
#: A UID root for the planted UIDs: the rest of each UID is the patient's birth date and MRN.
UID_ROOT = "1.2.826.0.1.3680043.8.498"


def date_variants(da: str) -> list[str]:
    """A DICOM DA date in the formats people and libraries write it."""
    y, m, d = da[:4], da[4:6], da[6:]
    return [da, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}", f"{y}/{m}/{d}",
            f"{y}.{m}.{d}"]


def mrn_of(tag: str, index: int) -> str:
    """A numeric medical record number for this run (9 digits), as UIDs can embed one."""
    return f"{int(tag, 16) % 9_000_000 + 1_000_000}{index:02d}"


def plant(path: Path, tag: str, index: int, birth_date: str, *, bad_date: bool = False) -> str:
    """Overwrite the generator's canaries with distinctive PHI for this test run, in every
    free-text tag the publisher reads and in the UIDs; returns the planted StudyInstanceUID."""
    ds = pydicom.dcmread(path)
    name = f"PHICANARY{tag}^ZELDA{tag}^{index}"
    ds.PatientName = name
    ds.PatientID = f"PHIPID{tag}{index}"
    ds.OtherPatientIDs = f"PHIOTHER{tag}{index}"
    ds.PatientAddress = f"17 CANARY LANE {tag}"
    ds.AccessionNumber = f"PHIACC{tag}{index}"
    # An invalid DA value: a library that validates it would quote it in a warning.
    ds.PatientBirthDate = f"{birth_date[:4]}-{birth_date[4:6]}-{birth_date[6:]}" if bad_date \
        else birth_date
    # Free text typed at the console, where people do type names and IDs.
    ds.StudyDescription = f"CHEST PA ZELDA{tag} {birth_date}"
    ds.SeriesDescription = f"PA PHIPID{tag}{index}"
    ds.IssuerOfPatientID = f"PHICANARY{tag} REGISTRY"
    ds.InstitutionName = f"17 CANARY LANE {tag} CLINIC"
    ds.StationName = f"ZELDA{tag}"[:16]
    ds.DeviceSerialNumber = mrn_of(tag, index)
    ds.Manufacturer = f"PHICANARY{tag}"
    ds.ManufacturerModelName = f"ZELDA{tag} {birth_date}"
    # UIDs that carry the birth date and the MRN, as some archives make them.
    study = f"{UID_ROOT}.{birth_date}.{mrn_of(tag, index)}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{study}.1.1")
    ds.save_as(path)
    return study


def needles(tag: str, n: int) -> dict[str, re.Pattern[bytes]]:
    """Every planted value (and its parts and date formats), as case-insensitive patterns;
    all-digit values must not touch other digits (so a long UID cannot match by chance)."""
    values = {f"PHICANARY{tag}", f"ZELDA{tag}", f"17 CANARY LANE {tag}", f"CANARY LANE {tag}"}
    for i in range(n):
        values |= {f"PHIPID{tag}{i}", f"PHIOTHER{tag}{i}", f"PHIACC{tag}{i}", mrn_of(tag, i)}
    for da in BIRTH_DATES:
        values |= set(date_variants(da))
    return {v: re.compile(rb"(?<![0-9])" + re.escape(v.encode()) + rb"(?![0-9])", re.I)
            for v in values}


def leaks(blob: bytes, patterns: dict[str, re.Pattern[bytes]]) -> list[str]:
    return [v for v, p in patterns.items() if p.search(blob)]


def worker_app_id(worker: Worker) -> str:
    env = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in env
                if e.startswith(b"RADSTREAM_APP_ID="))


def scan_topics(bootstrap: str, names: list[str], since_ms: int,
                patterns: dict[str, re.Pattern[bytes]]) -> tuple[int, dict[str, list[str]]]:
    """Read every record of `names` produced since `since_ms`; return (records read, leaks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"radstream-phi-scan-{uuid.uuid4().hex}"})
    found: dict[str, list[str]] = {}
    read = 0
    try:
        meta = consumer.list_topics(timeout=10).topics
        wanted = [TopicPartition(t, p, since_ms) for t in names for p in meta[t].partitions]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in wanted}
        todo = {(tp.topic, tp.partition) for tp in starts
                if 0 <= tp.offset < ends[(tp.topic, tp.partition)]}
        consumer.assign([tp for tp in starts if (tp.topic, tp.partition) in todo])
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error():
                    continue
                read += 1
                where = (str(msg.topic()), int(msg.partition() or 0))
                blob = (msg.key() or b"") + b"\n" + (msg.value() or b"")
                for name, value in cast(list[tuple[str, bytes | None]], msg.headers() or []):
                    blob += b"\n" + name.encode() + b"=" + (value or b"")
                hit = leaks(blob, patterns)
                if hit:
                    found.setdefault(where[0], []).extend(hit)
                if int(msg.offset() or 0) + 1 >= ends[where]:
                    todo.discard(where)
        assert not todo, f"could not read to the end of {sorted(todo)}"
    finally:
        consumer.close()
    return read, found


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code < 500:  # wants parameters: its error body is scanned all the same
            return bytes(exc.read())
        raise


def test_planted_phi_never_leaves_the_hospital(worker: Worker, bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    hospital = f"PHI{tag}"
    # The hospital's own folder names carry a patient's name too (e.g. a PACS export by name).
    folder = worker.root / f"export-PHICANARY{tag}-ZELDA{tag}"
    truths = generate_service_studies(folder, 3, seed=int(tag, 16) % 100_000)
    planted = [plant(truth.files[0], tag, i, BIRTH_DATES[i], bad_date=i == 1)
               for i, truth in enumerate(truths)]
    # A damaged file still carrying the PHI header: its dead letter must not quote it either.
    broken = truths[2].files[0]
    broken.write_bytes(broken.read_bytes()[:-1000])
    patterns = needles(tag, len(truths))
    assert leaks(truths[0].files[0].read_bytes(), patterns), "canaries were not planted"
    assert leaks(str(truths[0].files[0]).encode(), patterns), "folder canary was not planted"

    since_ms = int(time.time() * 1000) - 1000
    outcomes = OutcomeReader(bootstrap).start()
    try:
        report = publish_path(folder, root=worker.root, hospital_id=hospital,
                              priority="routine", bootstrap=bootstrap, key=TEST_KEY.encode())
        assert report.delivered == len(truths)
        # The bus knows the studies by keyed UIDs only; the publisher's report maps them.
        uids = [report.study_uids[uid] for uid in planted]
        findings = outcomes.wait_for(topics.FINDINGS, set(uids[:2]), 2, timeout_s=120)
        dead = outcomes.wait_for(topics.DEADLETTER, {uids[2]}, 1, timeout_s=60)
    finally:
        outcomes.close()
    # Every announced series was staged under <root>/<hospital>/<keyed study>/.
    assert sorted(p.name for p in (worker.root / hospital).iterdir()) == sorted(uids)
    # Sets, not counts: on a shared broker other engineers' workers may answer too.
    assert {(r.key, r.body["status"]) for r in findings} == {(uid, "ok") for uid in uids[:2]}
    assert "dicom_truncated" in {r.body["reason"] for r in dead}

    admin = AdminClient({"bootstrap.servers": bootstrap})
    app_id = worker_app_id(worker)
    names = sorted(t for t in admin.list_topics(timeout=10).topics
                   if t.startswith("radiology.") or t.startswith(f"{app_id}-"))
    assert {topics.STUDIES.name, topics.FINDINGS.name, topics.DEADLETTER.name} <= set(names)
    assert any(t.endswith("-changelog") for t in names), names
    # Positive control: the hospital id is legitimately on the bus, so the scan must see it.
    control = {hospital: re.compile(re.escape(hospital.encode()))}
    read, found = scan_topics(bootstrap, names, since_ms, patterns | control)
    assert read >= len(truths) * 2
    assert hospital in found.pop(topics.FINDINGS.name, []), "the scan missed the findings"
    found = {t: hits for t, v in found.items() if (hits := [h for h in v if h != hospital])}
    assert found == {}, f"PHI on the bus: {found}"

    base = worker.stats_url.removesuffix("/stats")
    surfaces = {"worker log": worker.log.read_bytes(),
                "/metrics": http_get(worker.metrics_url) or b""}
    for path in API_PATHS:
        body = http_get(base + path)
        if body is not None:
            surfaces[path] = body
    assert surfaces["/stats"], "the stats API answered nothing"
    leaked = {where: hit for where, blob in surfaces.items() if (hit := leaks(blob, patterns))}
    assert leaked == {}, f"PHI outside the bus: {leaked}"
    print(f"\nPHI scan: {read} records on {len(names)} topics, "
          f"{len(surfaces)} other surfaces ({', '.join(surfaces)}), no planted value found")
