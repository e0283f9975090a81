"""Drift on the real broker, the real Triton server and a real worker process: one device's
images go wrong (a bone window in its DICOM headers), radiologists review every study, and the
quality monitor raises a QualityAlert naming that device, served by GET /quality too."""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from bench.drift import DriftConfig, run_drift
from streams.contract import topics
from streams.contract.schemas import EventKind, validate

from .conftest import Worker

pytestmark = pytest.mark.integration

FAULTY = "H001-DX01"


def test_faulty_device_is_named_by_a_quality_alert(worker: Worker, bootstrap: str) -> None:
    cfg = DriftConfig(studies=120, hospitals=1, devices=2, faulty_device=FAULTY,
                      sample_fraction=1.0, rate_per_s=20.0, seed=8128, alert_timeout_s=180.0,
                      drain=False)
    quality_url = worker.stats_url.replace("/stats", "/quality")
    result = run_drift(cfg, dicom_root=worker.root, bootstrap=bootstrap,
                       quality_url=quality_url, log=lambda _: None)

    alert = result["alert"]
    assert alert is not None, f"no alert naming {FAULTY}: {result}"
    validate(EventKind.QUALITY_ALERT, alert)
    assert (alert["service"], alert["finding"], alert["kind"]) == (
        "chest-xray", "lung_nodule", "auc_below_floor")
    assert alert["value"] < alert["threshold"]
    assert alert["samples"] >= 40  # the monitor's default minimum before judging a device
    # Published on the alerts topic, keyed by service, with CloudEvents headers.
    assert result["alert_on_bus"] == {"key": "chest-xray",
                                      "ce_type": topics.ALERTS.event_type}
    # The served model really is worse on that device than on the healthy one.
    aucs = result["model_auc_vs_planted_truth"]
    assert aucs["faulty_device"] < 0.7 < aucs["other_devices"]

    with urllib.request.urlopen(quality_url, timeout=5) as r:
        report = orjson.loads(r.read())
    assert set(report) == {"services", "devices", "alerts"}
    assert any(a.get("device_id") == FAULTY and a["kind"] == "auc_below_floor"
               for a in report["alerts"])
    row = next(d for d in report["devices"] if d["device_id"] == FAULTY)
    assert row["reviews"] >= 40 and row["auc"] < alert["threshold"]
    service = next(s for s in report["services"] if s["finding"] == "lung_nodule")
    assert service["reviews"] > row["reviews"] and service["threshold"] > 0
    assert service["auc_ci"] is None or service["auc_ci"][0] <= service["auc"]
