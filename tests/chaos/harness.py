"""A private city for fault tests: its own Kafka broker, Triton server and worker processes on
their own ports and state folder, so faults (kill -9, broker restart, Triton outage) touch nothing
else. Studies reuse a small pool of real DICOM images under fresh study UIDs, so a 10,000-study
run costs seconds of set-up, not gigabytes of files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from services.ops.follow import OutcomeReader
from services.ops.processes import spawn_worker, stop
from services.ops.wait_http import wait_http
from services.synth.city import CityModel, CityTruth, generate_service_studies
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339
from streams.settings import REPO_ROOT

KAFKA_PORT, CONTROLLER_PORT = 19092, 19093
TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 18000, 18001, 18002


def scale() -> str:
    """`short` in `make test`, `full` in `make chaos` (RADSTREAM_CHAOS=full)."""
    return os.environ.get("RADSTREAM_CHAOS", "short")


@dataclass
class Fault:
    """What one fault did to the run: the figures each chaos test prints and records."""

    name: str
    studies_in: int = 0
    findings: int = 0
    studies_with_finding: int = 0
    deadletters: int = 0
    lost: int = 0
    duplicate_findings: int = 0
    recovery_s: float | None = None
    #: The first lost study UIDs, so a loss can be traced in the worker logs and on the bus.
    lost_uids: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def report(self) -> None:
        line = json.dumps(self.__dict__, default=str)
        print(f"\nCHAOS {line}")
        out = REPO_ROOT / "artifacts" / "chaos"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.name}.json").write_text(json.dumps(self.__dict__, indent=2, default=str))


class City:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.dicom = root / "dicom"
        self.app_id = f"radstream-chaos-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "RADSTREAM_STATE": str(self.state),
                    "RADSTREAM_KAFKA_PORT": str(KAFKA_PORT),
                    "RADSTREAM_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
                    "RADSTREAM_TRITON_HTTP_PORT": str(TRITON_HTTP),
                    "RADSTREAM_TRITON_GRPC_PORT": str(TRITON_GRPC),
                    "RADSTREAM_TRITON_METRICS_PORT": str(TRITON_METRICS)}
        self.bootstrap = f"127.0.0.1:{KAFKA_PORT}"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.pool: list[CityTruth] = []

    # --- infrastructure -------------------------------------------------------------------
    def _script(self, name: str, *args: str) -> None:
        subprocess.run([str(REPO_ROOT / "deploy" / f"{name}.sh"), *args], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    def kafka(self, action: str) -> None:
        self._script("kafka", action)

    def triton(self, action: str) -> None:
        self._script("triton", action)

    def triton_pid(self) -> int:
        return int((self.state / "triton" / "triton.pid").read_text())

    def start_worker(self, index: int = 0) -> subprocess.Popen[bytes]:
        env = {**self.env, "RADSTREAM_KAFKA": self.bootstrap,
               "RADSTREAM_TRITON_GRPC": f"127.0.0.1:{TRITON_GRPC}",
               "RADSTREAM_APP_ID": self.app_id, "RADSTREAM_DICOM_ROOTS": str(self.dicom),
               "RADSTREAM_WEB_PORT": str(16066 + index),
               "RADSTREAM_METRICS_PORT": str(19108 + index),
               "RADSTREAM_DATADIR": str(self.state / f"faust-{index}"),
               "RADSTREAM_TRITON_TIMEOUT_S": "2"}
        logs = REPO_ROOT / "artifacts" / "chaos"
        proc = spawn_worker(env, logs / f"worker-{index}.log", loglevel="warn")
        deadline = time.monotonic() + 120
        while not wait_http(self.stats_url(index), 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chaos worker {index} did not start; see {logs}")
        self.workers.append(proc)
        return proc

    @staticmethod
    def stats_url(index: int = 0) -> str:
        return f"http://127.0.0.1:{16066 + index}/stats"

    def stats(self, index: int = 0) -> dict[str, Any]:
        with urllib.request.urlopen(self.stats_url(index), timeout=5) as resp:
            body: dict[str, Any] = orjson.loads(resp.read())
            return body

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.workers.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.workers):
            stop(proc, 20)
        self.workers.clear()

    # --- studies --------------------------------------------------------------------------
    def make_pool(self, size: int) -> None:
        # Four hospitals' DX rooms, nodules at the chest phantom's own prevalence (0.3); each
        # hospital's files in <root>/<hospital_id>/, the only folder the worker reads for it.
        self.pool = generate_service_studies(
            self.dicom, size, seed=4242,
            model=CityModel(hospitals=4, devices=8, device_mix=(("DX", 1.0),)))

    def announcements(self, n: int) -> list[tuple[str, CityTruth, bytes]]:
        """n StudyAnnounced bodies with fresh UIDs over the image pool."""
        rng = random.Random(n)
        out = []
        for _ in range(n):
            truth = rng.choice(self.pool)
            uid = f"2.25.{uuid.uuid4().int}"
            now = utc_now_rfc3339()
            body = {"study_uid": uid, "hospital_id": truth.hospital_id,
                    "device_id": truth.device_id, "modality": "DX", "body_part": "CHEST",
                    "priority": "routine", "acquired_at": now, "published_at": now,
                    "patient_ref": uuid.uuid4().hex,
                    "series": [{"series_uid": uid + ".1", "modality": "DX", "body_part": "CHEST",
                                "instance_count": 1, "uri": truth.files[0].as_uri()}]}
            out.append((uid, truth, orjson.dumps(body)))
        return out

    def publish(self, items: list[tuple[str, CityTruth, bytes]], rate_per_s: float) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5})
        start = time.monotonic()
        for i, (uid, _, body) in enumerate(items):
            delay = start + i / rate_per_s - time.monotonic()
            if delay > 0:
                producer.poll(delay)
            producer.produce(topics.STUDIES.name, key=uid.encode(), value=body)
        # A broker restart may be under way: keep flushing until everything is delivered.
        deadline = time.monotonic() + 180
        while producer.flush(5) and time.monotonic() < deadline:
            pass
        assert producer.flush(0) == 0, "the chaos publisher could not deliver every study"

    def reader(self) -> OutcomeReader:
        return OutcomeReader(self.bootstrap).start()

    def reader_from_start(self) -> OutcomeReader:
        """Everything this private broker holds (it only ever served this test)."""
        return OutcomeReader(self.bootstrap).start(from_beginning=True)


def account(fault: Fault, reader: OutcomeReader, uids: set[str]) -> None:
    """Fill the figures: every study must have a Finding or a DeadLetter; count duplicates."""
    findings = reader.on(topics.FINDINGS, uids)
    dead = {r.key for r in reader.on(topics.DEADLETTER, uids)}
    with_finding = {r.key for r in findings}
    fault.studies_in = len(uids)
    fault.findings = len(findings)
    fault.studies_with_finding = len(with_finding)
    fault.deadletters = len(dead)
    lost = uids - with_finding - dead
    fault.lost = len(lost)
    fault.lost_uids = sorted(lost)[:50]
    fault.duplicate_findings = len(findings) - len(with_finding)


def wait_all(reader: OutcomeReader, uids: set[str], timeout_s: float) -> float:
    """Read until every study has an outcome; return when that happened (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(reader.resolved(uids)) < len(uids):
        reader.poll(0.5)
    reader.poll(1.0)
    return time.monotonic()


def first_finding_after(reader: OutcomeReader, uids: set[str], timeout_s: float) -> float | None:
    """Seconds until one more of `uids` gets a Finding (processing has resumed)."""
    start = time.monotonic()
    seen = len(reader.resolved(uids))
    while time.monotonic() - start < timeout_s:
        reader.poll(0.2)
        if len(reader.resolved(uids)) > seen:
            return time.monotonic() - start
    return None
