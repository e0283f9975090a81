"""Processes the benchmark starts: a private Triton serving the project's model repository
(so the identity model is loaded and no one else's traffic shares it), radstream workers in a
fresh consumer group, and the naive baseline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import probes
from bench.traffic import start_group_at_end
from streams.contract import topics
from streams.contract.catalog import service
from streams.settings import REPO_ROOT

#: Private Triton ports (clear of the shared server's 8000-8002 and the chaos suite's 18000+).
TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 28000, 28001, 28002
#: Private Kafka ports (clear of the shared broker's 9092/9093 and the chaos suite's 19092/3).
KAFKA_PORT, KAFKA_CONTROLLER_PORT = 29092, 29093


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Triton:
    grpc: str
    metrics_url: str
    pid: int | None
    started: bool
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(REPO_ROOT / "deploy" / "triton.sh"), "stop"], env=self.env,
                           check=False, stdout=subprocess.DEVNULL)


@dataclass
class Kafka:
    bootstrap: str
    started: bool
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(REPO_ROOT / "deploy" / "kafka.sh"), "stop"], env=self.env,
                           check=False, stdout=subprocess.DEVNULL)


def private_kafka(state: Path) -> Kafka:
    """Start (or reuse) the benchmark's own broker with deploy/kafka.sh on its own ports.

    A shared broker is not enough: any other worker on it (someone's test session) also reads
    the studies topic, and answers the benchmark's studies with its own outcomes.
    """
    env = {**os.environ, "RADSTREAM_STATE": str(state),
           "RADSTREAM_KAFKA_PORT": str(KAFKA_PORT),
           "RADSTREAM_KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT)}
    script = str(REPO_ROOT / "deploy" / "kafka.sh")
    running = subprocess.run([script, "status"], env=env, capture_output=True).returncode == 0
    subprocess.run([script, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    return Kafka(f"127.0.0.1:{KAFKA_PORT}", started=not running, env=env)


def private_triton(state: Path) -> Triton:
    """Start (or reuse) the benchmark's own Triton with deploy/triton.sh on its own ports."""
    env = {**os.environ, "RADSTREAM_STATE": str(state),
           "RADSTREAM_TRITON_HTTP_PORT": str(TRITON_HTTP),
           "RADSTREAM_TRITON_GRPC_PORT": str(TRITON_GRPC),
           "RADSTREAM_TRITON_METRICS_PORT": str(TRITON_METRICS)}
    script = str(REPO_ROOT / "deploy" / "triton.sh")
    running = subprocess.run([script, "status"], env=env, capture_output=True).returncode == 0
    subprocess.run([script, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    pid = int((state / "triton" / "triton.pid").read_text())
    return Triton(f"127.0.0.1:{TRITON_GRPC}", f"http://127.0.0.1:{TRITON_METRICS}/metrics",
                  pid, started=not running, env=env)


def external_triton(grpc: str, metrics_url: str, pid: int | None) -> Triton:
    """A Triton someone else runs (e.g. the GPU container); its CPU is counted only with a pid."""
    return Triton(grpc, metrics_url, pid, started=False)


@dataclass
class Workers:
    """Radstream worker processes sharing one fresh consumer group."""

    group: str
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu_seconds(self) -> float:
        return sum(probes.cpu_seconds(probes.process_tree(pid)) for pid in self.pids)

    def memory(self) -> tuple[int, int]:
        """(sum of current RSS, largest peak RSS) over the workers, each with its
        preprocessing processes."""
        stats = [probes.tree_memory(pid) for pid in self.pids]
        return sum(s[0] for s in stats), max((s[1] for s in stats), default=0)

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def start_workers(count: int, *, bootstrap: str, triton_grpc: str, model: str,
                  dicom_root: Path, state: Path, logs: Path,
                  extra_env: dict[str, str] | None = None) -> Workers:
    """Start `count` real `radstream worker` processes in a fresh group positioned at the end
    of every topic (see traffic.start_group_at_end); they are not waited for here."""
    group = f"radstream-bench-{uuid.uuid4().hex[:8]}"
    start_group_at_end(bootstrap, group, topics.all_topics())
    logs.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    procs, paths = [], []
    for i in range(count):
        env = {**os.environ, "RADSTREAM_KAFKA": bootstrap, "RADSTREAM_TRITON_GRPC": triton_grpc,
               "RADSTREAM_APP_ID": group, "RADSTREAM_DICOM_ROOTS": str(dicom_root),
               "RADSTREAM_WEB_PORT": str(free_port()),
               "RADSTREAM_METRICS_PORT": str(free_port()),
               "RADSTREAM_OFFSET_RESET": "latest",
               "RADSTREAM_DATADIR": str(state / f"{group}-{i}"),
               **(extra_env or {})}
        if model != service("chest-xray").model:
            env["RADSTREAM_MODEL_OVERRIDE"] = model
        log = logs / f"{group}-{i}.log"
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "services.cli", "worker", "-l", "warn"],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        paths.append(log)
    return Workers(group, procs, paths)


def start_naive(*, bootstrap: str, triton_grpc: str, model: str, dicom_root: Path, count: int,
                log: Path) -> subprocess.Popen[bytes]:
    """The naive baseline process; returns once it has positioned its consumer."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.naive", "--bootstrap", bootstrap, "--triton", triton_grpc,
         "--model", model, "--root", str(dicom_root), "--count", str(count)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(b"ready"):
        proc.kill()
        raise RuntimeError(f"naive baseline did not start; see {log}")
    return proc


def wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False
