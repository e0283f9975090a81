"""End to end on the real broker, the real Triton server and a real worker process:
200 synthetic chest X-ray studies in, 200 Findings and 200 Latency events out, counted by the
stats API and the Prometheus metrics, with Triton's dynamic batcher merging requests."""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.request
import uuid

import orjson
import pytest

from services.ops.follow import OutcomeReader
from services.publisher import publish_path
from services.synth.city import generate_service_studies
from streams.analytics.auc import roc_auc
from streams.contract import topics
from streams.contract.schemas import EventKind, validate

from .conftest import TEST_KEY, Worker

pytestmark = pytest.mark.integration

N_STUDIES = 200
TRITON_METRICS = "http://127.0.0.1:8002/metrics"


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    m = re.search("^" + pattern + "$", text, re.M)
    return float(m.group(1)) if m else 0.0


def triton_counts() -> tuple[float, float]:
    with urllib.request.urlopen(TRITON_METRICS, timeout=5) as resp:
        text = resp.read().decode()
    labels = 'model="cxr_lesion",version="1"'
    return (metric(text, "nv_inference_count", labels),
            metric(text, "nv_inference_exec_count", labels))


def stats(worker: Worker) -> dict:
    with urllib.request.urlopen(worker.stats_url, timeout=5) as resp:
        return orjson.loads(resp.read())


def test_two_hundred_studies_end_to_end(worker: Worker, bootstrap: str) -> None:
    hospital = f"T{uuid.uuid4().hex[:8]}"
    folder = worker.root / hospital
    truths = generate_service_studies(folder, N_STUDIES, seed=90210,
                                      prevalence={"lung_nodule": 0.4})
    before_metrics = worker.metrics_text()
    before_triton = triton_counts()

    outcomes = OutcomeReader(bootstrap).start()
    try:
        report = publish_path(folder, root=worker.root, hospital_id=hospital,
                              priority="routine", bootstrap=bootstrap, key=TEST_KEY.encode())
        assert report.delivered == N_STUDIES and report.failed == 0
        # The bus carries keyed study UIDs; the publisher's report maps the hospital's ones.
        truths = [dataclasses.replace(t, study_uid=report.study_uids[t.study_uid])
                  for t in truths]
        uids = {t.study_uid for t in truths}

        findings = outcomes.wait_for(topics.FINDINGS, uids, N_STUDIES, timeout_s=240)
        latencies = outcomes.wait_for(topics.LATENCY, uids, N_STUDIES, timeout_s=60)
        dead = outcomes.on(topics.DEADLETTER, uids)
    finally:
        outcomes.close()

    assert dead == []
    # Exactly one Finding and one Latency event per study, each valid against its schema.
    assert sorted(r.key for r in findings) == sorted(uids)
    assert sorted(r.key for r in latencies) == sorted(uids)
    for rec in findings:
        validate(EventKind.FINDING, rec.body)
        assert rec.body["status"] == "ok" and rec.body["service"] == "chest-xray"
        assert rec.body["study_uid"] == rec.key and rec.body["hospital_id"] == hospital
        assert rec.headers["ce_specversion"] == b"1.0"
        assert rec.headers["ce_type"] == topics.FINDINGS.event_type.encode()
        assert rec.headers["content-type"] == b"application/json"
        assert rec.headers["ce_id"] and rec.headers["ce_time"] and rec.headers["ce_source"]
    for rec in latencies:
        validate(EventKind.LATENCY, rec.body)
        assert rec.headers["ce_type"] == topics.LATENCY.event_type.encode()
        assert set(rec.body["stages"]) == {"queue", "fetch", "preprocess", "infer", "publish"}

    # The model is real: its scores separate planted lesions from clean studies it never saw.
    truth = {t.study_uid: t.labels["lung_nodule"] for t in truths}
    scores = {r.key: r.body["findings"][0]["score"] for r in findings}
    auc = roc_auc([truth[u] for u in scores], list(scores.values()))
    assert auc >= 0.9, f"AUC {auc:.3f} on unseen studies"

    # The stats API counts each study once (the aggregator may trail the findings a little).
    deadline = time.monotonic() + 60
    row = {}
    while time.monotonic() < deadline:
        row = stats(worker)["hospitals"].get(hospital, {})
        if row.get("studies") == N_STUDIES:
            break
        time.sleep(0.5)
    assert row.get("studies") == N_STUDIES
    assert row.get("ok") == N_STUDIES and row.get("findings") == N_STUDIES
    assert row.get("positive") == sum(1 for r in findings if r.body["findings"][0]["positive"])

    # Prometheus counters moved by exactly the number of studies.
    after = worker.metrics_text()
    for name, labels in [("radstream_findings_total", 'service="chest-xray",status="ok"'),
                         ("radstream_work_items_total", 'service="chest-xray"')]:
        delta = metric(after, name, labels) - metric(before_metrics, name, labels)
        assert delta == N_STUDIES, f"{name}{{{labels}}} moved by {delta}"
    assert metric(after, "radstream_inference_batch_size_count", 'service="chest-xray"') > 0

    # Triton's own metrics: fewer model executions than inferences means batching happened.
    count, execs = (a - b for a, b in zip(triton_counts(), before_triton, strict=True))
    assert count == N_STUDIES
    assert 0 < execs < count
