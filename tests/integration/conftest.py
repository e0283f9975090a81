"""Fixtures for integration tests: the real Kafka broker, the real Triton server, and a real
stream worker process. Kafka and Triton are started if they are not running (the scripts are
idempotent) and stopped at the end only if this session started them."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from services.ops.follow import OutcomeReader, Record
from services.ops.probe import wait_until_positioned
from services.ops.processes import spawn_worker, stop
from services.ops.wait_http import wait_http
from services.publisher import publish_path
from services.synth.city import generate_service_studies
from streams.contract import topics
from streams.rules.origin import intake_topic
from streams.settings import REPO_ROOT

TEST_KEY = "radstream-test-pseudonym-key-0123456789"
#: Intake topic of the hospital the intake-gate test publishes as.
INTAKE_TEST_HOSPITAL = "ITEST"
INTAKE_TEST_TOPIC = intake_topic(INTAKE_TEST_HOSPITAL)
#: The local city archive (deploy/orthanc.sh), the one archive the test worker may fetch from.
ORTHANC_HTTP_PORT = int(os.environ.get("RADSTREAM_ORTHANC_HTTP_PORT", "8042"))
ARCHIVE_URL = f"http://127.0.0.1:{ORTHANC_HTTP_PORT}/dicom-web"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure(service: str) -> bool:
    """Start a local service unless it is already running; return True if we started it."""
    script = REPO_ROOT / "deploy" / f"{service}.sh"
    running = subprocess.run([script, "status"], capture_output=True).returncode == 0
    subprocess.run([script, "up"], check=True)
    return not running


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    started = [s for s in ("kafka", "triton") if _ensure(s)]
    yield
    for s in reversed(started):
        subprocess.run([REPO_ROOT / "deploy" / f"{s}.sh", "stop"], check=False)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[str]:
    """The local Orthanc archive's DICOMweb base URL (started unless running, stopped at the
    end only if this session started it)."""
    started = _ensure("orthanc")
    yield ARCHIVE_URL
    if started:
        subprocess.run([REPO_ROOT / "deploy" / "orthanc.sh", "stop"], check=False)


@pytest.fixture(scope="session")
def bootstrap(services: None) -> str:
    return os.environ.get("RADSTREAM_KAFKA", "127.0.0.1:9092")


@dataclass(frozen=True)
class Worker:
    root: Path
    stats_url: str
    metrics_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return resp.read().decode()


@pytest.fixture(scope="session")
def worker(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One real `radstream worker` for the session, in its own consumer group, reading only
    what is published after it started (probes prove it is positioned on every partition)."""
    root = tmp_path_factory.mktemp("dicom-root")
    state = tmp_path_factory.mktemp("worker-state")
    web, metrics = _free_port(), _free_port()
    env = {
        **os.environ,
        "RADSTREAM_KAFKA": bootstrap,
        "RADSTREAM_APP_ID": f"radstream-test-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_WEB_PORT": str(web),
        "RADSTREAM_METRICS_PORT": str(metrics),
        "RADSTREAM_DICOM_ROOTS": str(root),
        "RADSTREAM_OFFSET_RESET": "latest",
        "RADSTREAM_INTAKE_HOSPITALS": INTAKE_TEST_HOSPITAL,
        "RADSTREAM_DATADIR": str(state / "faust"),
        "RADSTREAM_TRITON_ATTEMPTS": "3",
        "RADSTREAM_ARCHIVE_URLS": ARCHIVE_URL,
    }
    # A hospital intake topic that exists before the worker subscribes to the intake pattern.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if INTAKE_TEST_TOPIC not in admin.list_topics(timeout=10).topics:
        for fut in admin.create_topics([NewTopic(INTAKE_TEST_TOPIC, 4, 1)]).values():
            fut.result()
    log = REPO_ROOT / "artifacts" / "worker.log"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    proc = spawn_worker(env, log)
    w = Worker(root, f"http://127.0.0.1:{web}/stats", f"http://127.0.0.1:{metrics}/metrics",
               log, proc)
    try:
        if not wait_http(w.stats_url, 120):
            pytest.fail(f"worker did not serve {w.stats_url}; see {log}")
        wait_until_positioned(bootstrap, timeout_s=120)
        yield w
    finally:
        stop(proc)


@dataclass(frozen=True)
class Published:
    hospital_id: str
    study_uids: frozenset[str]
    findings: list[Record]


def publish_and_wait(worker: Worker, bootstrap: str, n: int, *, seed: int,
                     priority: str = "routine") -> Published:
    """Announce `n` synthetic chest X-ray studies from a fresh hospital through the real
    publisher, wait for their Findings and for the stats API to count all of them."""
    hospital = f"T{uuid.uuid4().hex[:8]}"
    folder = worker.root / hospital
    truths = generate_service_studies(folder, n, seed=seed, prevalence={"lung_nodule": 0.4})
    outcomes = OutcomeReader(bootstrap).start()
    try:
        report = publish_path(folder, root=worker.root, hospital_id=hospital, priority=priority,
                              bootstrap=bootstrap, key=TEST_KEY.encode())
        assert report.delivered == n and report.failed == 0
        # The bus carries keyed study UIDs; the publisher's report maps the hospital's ones.
        uids = frozenset(report.study_uids[t.study_uid] for t in truths)
        findings = outcomes.wait_for(topics.FINDINGS, uids, n, timeout_s=180)
    finally:
        outcomes.close()
    # Distinct studies: on a broker shared with other test sessions a study can be routed twice.
    assert {r.key for r in findings} == uids, f"{len(findings)} findings for {n} studies"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(worker.stats_url, timeout=5) as resp:
            row = orjson.loads(resp.read())["hospitals"].get(hospital, {})
        if row.get("studies") == n:
            break
        time.sleep(0.5)
    assert row.get("studies") == n, f"stats API counts {row.get('studies')} of {n} studies"
    return Published(hospital, uids, findings)
