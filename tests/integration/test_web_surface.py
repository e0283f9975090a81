"""The worker's HTTP surface is what README documents, where README says (issue 15, defect 9).

Faust mounts routes of its own: `/table/{name}/{key}/` read any table entry (the quality joins:
a study's scores beside its radiologists' reads; the router's fingerprints) and `/router/`
lists the cluster. They answer 404 here. The web server and /metrics listen on
RADSTREAM_BIND_HOST (127.0.0.1 in the test worker) only, not on every interface, and no
documented route's answer carries a study UID (the hospital's or the bus's pseudonymous one)
or a patient reference, even after studies and their reviews went through."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest

from services.demo.reviews import publish_reviews, reviewer_ref
from services.ops.follow import OutcomeReader
from streams.contract import topics
from streams.contract.catalog import service
from streams.contract.cloudevents import utc_now_rfc3339
from streams.web.dashboard import STATIC_PREFIX, load_assets

from .conftest import Published, Worker, publish_and_wait

pytestmark = pytest.mark.integration

#: The routes README documents (schemas/stats-api.openapi.yaml for the stats API).
DOCUMENTED = ["/stats", "/openapi.yaml", "/quality", "/dashboard",
              *(f"/stats/windows?window={w}&dimension={d}"
                for w in ("total", "hour") for d in ("city", "hospital", "device", "service",
                                                     "finding")),
              *(STATIC_PREFIX + name for name in sorted(load_assets()))]
#: /proc/net/tcp's state of a listening socket.
TCP_LISTEN = "0A"


def base_url(worker: Worker) -> str:
    parts = urlsplit(worker.stats_url)
    return f"{parts.scheme}://{parts.netloc}"


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net writes them) of the TCP sockets listening on `port`,
    IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == TCP_LISTEN and int(hex_port, 16) == port:
                found.append(address)
    return found


@pytest.fixture(scope="module")
def published(worker: Worker, bootstrap: str) -> tuple[Published, set[str]]:
    """Studies through the pipeline, with reviews of their Findings; and every identifier
    that must not come back over HTTP (hospital and bus study UIDs, patient references)."""
    announcements = OutcomeReader(bootstrap, specs=(topics.STUDIES,)).start()
    try:
        run = publish_and_wait(worker, bootstrap, 6, seed=909)
        announcements.wait_for(topics.STUDIES, run.study_uids, len(run.study_uids),
                               timeout_s=30)
        bodies = [r.body for r in announcements.on(topics.STUDIES, run.study_uids)]
    finally:
        announcements.close()
    secrets = set(run.study_uids) | {b["patient_ref"] for b in bodies}
    for path in (worker.root / run.hospital_id).rglob("*.dcm"):
        secrets.add(str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID))
    codes = [f.code for f in service("chest-xray").findings]
    reviews = [{"study_uid": uid, "service": "chest-xray", "code": code,
                "radiologist_positive": i % 2 == 0, "reviewer_ref": reviewer_ref(909, i),
                "reviewed_at": utc_now_rfc3339()}
               for i, uid in enumerate(sorted(run.study_uids)) for code in codes]
    assert publish_reviews(bootstrap, reviews) == len(reviews)
    deadline = time.monotonic() + 60
    while "radstream_quality_reviews_total" not in worker.metrics_text():
        assert time.monotonic() < deadline, "no review was joined with its Finding"
        time.sleep(0.5)
    return run, secrets


def test_faust_routes_are_not_served(worker: Worker,
                                     published: tuple[Published, set[str]]) -> None:
    run, _ = published
    uid = sorted(run.study_uids)[0]
    base = base_url(worker)
    for path in ("/table/", "/table/quality-joins/", f"/table/quality-joins/{uid}|chest-xray/",
                 f"/table/study-fingerprints/{uid}/", "/router/",
                 f"/router/quality-joins/{uid}|chest-xray/", "/", "/assignment/", "/graph/",
                 "/performance/"):
        assert status(base + path) == 404, path
    for path in DOCUMENTED:
        assert status(base + path) == 200, path


def test_web_and_metrics_listen_on_the_bind_host_only(worker: Worker) -> None:
    loopback = "0100007F"  # 127.0.0.1, as /proc/net/tcp writes it
    for url in (worker.stats_url, worker.metrics_url):
        port = urlsplit(url).port
        assert port is not None
        assert listening(port) == [loopback], url


def test_no_documented_route_answers_with_a_study_uid_or_patient_reference(
        worker: Worker, published: tuple[Published, set[str]]) -> None:
    _, secrets = published
    assert len(secrets) >= 12
    base = base_url(worker)
    for path in DOCUMENTED:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            body = resp.read().decode()
        leaked = sorted(s for s in secrets if s in body)
        assert leaked == [], f"{path} shows {leaked[:3]}"
