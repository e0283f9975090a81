"""Metric names follow Prometheus conventions and carry no identifiers as labels."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from streams.contract.events import STAGES
from streams.metrics import ALLOWED_LABELS, create_metrics


def test_names_units_and_labels_follow_conventions() -> None:
    registry = CollectorRegistry()
    m = create_metrics(registry)
    m.findings.labels(service="chest-xray", status="ok").inc()
    m.stage_seconds.labels(service="chest-xray", stage="infer").observe(0.1)
    families = list(registry.collect())
    assert families
    for fam in families:
        assert re.fullmatch(r"radstream_[a-z0-9_]+", fam.name), fam.name
        if fam.type == "counter":
            assert any(s.name == fam.name + "_total" for s in fam.samples) or not fam.samples
        if (fam.type == "histogram" and "duration" in fam.name) or fam.name.endswith("_seconds"):
            assert fam.name.endswith("_seconds"), f"{fam.name}: durations are in seconds"
        assert not re.search(r"_(ms|milliseconds|minutes)$", fam.name)
        for sample in fam.samples:
            labels = set(sample.labels) - {"le"}
            assert labels <= ALLOWED_LABELS, f"{fam.name} has labels {labels - ALLOWED_LABELS}"


def test_no_identifier_labels() -> None:
    forbidden = {"study_uid", "patient_ref", "patient_id", "hospital_id", "device_id", "uri"}
    assert not forbidden & ALLOWED_LABELS


def test_values_read_back_from_a_fresh_registry() -> None:
    registry = CollectorRegistry()
    m = create_metrics(registry)
    m.deadletters.labels(reason="invalid_json").inc(3)
    m.batch_size.labels(service="chest-xray").observe(5)
    assert registry.get_sample_value("radstream_deadletters_total",
                                     {"reason": "invalid_json"}) == 3
    assert registry.get_sample_value("radstream_inference_batch_size_bucket",
                                     {"service": "chest-xray", "le": "8.0"}) == 1
    assert registry.get_sample_value("radstream_inference_batch_size_bucket",
                                     {"service": "chest-xray", "le": "4.0"}) == 0
    assert set(STAGES) == {"queue", "fetch", "preprocess", "infer", "publish"}
