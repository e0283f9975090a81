"""SRE view on the real thing: a real Prometheus server scrapes the real worker (and Triton) every
second with our alert rules loaded; studies published through the pipeline show up in PromQL
exactly, consumer lag is exported and drains, and promtool accepts our /metrics exposition."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml

from services.ops.processes import stop
from services.ops.wait_http import wait_http
from streams.contract import topics
from streams.settings import REPO_ROOT
from tests.unit.test_prometheus_rules import TRITON_METRICS, promtool

from .conftest import Worker, publish_and_wait

pytestmark = pytest.mark.integration

N_STUDIES = 16
OK_FINDINGS = 'radstream_findings_total{service="chest-xray",status="ok"}'


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:
            body = orjson.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        """The single value of an instant query, None when it has no series (yet)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait(self, promql: str, want: float, timeout_s: float = 60) -> float | None:
        """Poll until the query's value equals `want`; return the last value seen."""
        deadline = time.monotonic() + timeout_s
        value = self.scalar(promql)
        while value != want and time.monotonic() < deadline:
            time.sleep(0.5)
            value = self.scalar(promql)
        return value

    def rules(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=5) as resp:
            return list(orjson.loads(resp.read())["data"]["groups"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    promtool()  # same rule as for promtool: skipped only outside CI
    if binary is None:
        pytest.fail("prometheus is installed without promtool's companion server binary")
    root = tmp_path_factory.mktemp("prometheus")
    worker_target = urllib.parse.urlsplit(worker.metrics_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((REPO_ROOT / "deploy/prometheus/rules")
                                              .glob("*.yml"))],
        "scrape_configs": [
            {"job_name": "radstream", "static_configs": [{"targets": [worker_target]}]},
            {"job_name": "triton", "static_configs": [{"targets": ["127.0.0.1:8002"]}]},
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = REPO_ROOT / "artifacts" / "prometheus.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http(f"{url}/-/ready", 60):
            pytest.fail(f"prometheus did not become ready; see {log}")
        yield Prometheus(url)
    finally:
        stop(proc)


def test_prometheus_counts_exactly_what_was_published(prometheus: Prometheus, worker: Worker,
                                                      bootstrap: str) -> None:
    assert prometheus.wait('up{job="radstream"}', 1) == 1
    # The pipeline is idle: let two scrapes pass so the snapshot is the worker's current value.
    time.sleep(2.5)
    before = prometheus.scalar(OK_FINDINGS) or 0.0

    publish_and_wait(worker, bootstrap, N_STUDIES, seed=5150)

    after = prometheus.wait(OK_FINDINGS, before + N_STUDIES, timeout_s=30)
    assert after == before + N_STUDIES, f"Prometheus saw {after} - {before}, published {N_STUDIES}"
    # The end-to-end histogram moved too, so the latency SLO has data to judge.
    count = prometheus.scalar('sum(radstream_end_to_end_seconds_count{service="chest-xray"})')
    assert count is not None and count >= N_STUDIES

    # Consumer lag is exported per contract topic and drains once the studies are done.
    lag = f'radstream_consumer_lag_records{{topic="{topics.STUDIES.name}"}}'
    assert prometheus.wait(lag, 0, timeout_s=60) == 0
    exported = {r["metric"]["topic"] for r in prometheus.query("radstream_consumer_lag_records")}
    assert topics.STUDIES.name in exported
    assert exported <= {t.name for t in topics.all_topics()}


def test_rules_load_and_triton_is_scraped(prometheus: Prometheus) -> None:
    assert prometheus.wait('up{job="triton"}', 1) == 1
    alerts = {r["name"] for g in prometheus.rules() for r in g["rules"] if r["type"] == "alerting"}
    assert {"TritonDown", "RadstreamConsumerLagHigh", "RadstreamAUCBelowFloor"} <= alerts
    for name in sorted(TRITON_METRICS):  # the names the Grafana dashboard relies on
        assert prometheus.query(f'{name}{{job="triton"}}'), f"Triton exports no {name}"


def test_promtool_accepts_the_worker_exposition(worker: Worker) -> None:
    text = worker.metrics_text()
    assert "radstream_consumer_lag_records" in text
    done = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
