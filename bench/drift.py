"""Drift benchmark: how many reviews until the quality monitor names a device gone wrong.

`.venv/bin/python -m bench.drift` writes a synthetic city in which one device has a fault
(services/synth/faults.py: by default a wrong VOI window in its DICOM headers), starts a real
`radstream worker` against the running Kafka broker and Triton server (started here if they
are not running, and then stopped again), announces the studies at a steady rate with simulated
radiologist reviews of a sample of them, and waits for the QualityAlert that names the device.

It reports (and writes to bench/results/drift.json): reviews and studies until the alert, the
per-device AUC of the served model against the planted truth, the monitor's own GET /quality
figures, and any alert that named something else (a false alarm).

`run_drift` is the scenario itself; tests/integration/test_quality_drift.py runs a small one.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from services.demo.reviews import ReviewConfig, ReviewPublisher, simulate_city_reviews
from services.ops.follow import OutcomeReader
from services.ops.probe import wait_until_positioned
from services.ops.processes import spawn_worker, stop
from services.ops.wait_http import wait_http
from services.publisher.cli import build_announcements, stage_announcements
from services.publisher.producer import StudyPublisher
from services.synth.city import CityModel, CityTruth, generate_service_studies
from services.synth.faults import DeviceFault
from streams.analytics.auc import roc_auc
from streams.contract import topics
from streams.contract.cloudevents import utc_now_rfc3339
from streams.settings import REPO_ROOT, Settings

RESULTS = REPO_ROOT / "bench" / "results" / "drift.json"


@dataclass(frozen=True)
class DriftConfig:
    studies: int = 600
    #: A city of this many hospitals and DX rooms (every hospital has one, the rest go to
    #: hospitals by size); chest X-ray studies spread evenly over the rooms.
    hospitals: int = 2
    devices: int = 4
    faulty_device: str = "H001-DX01"
    fault: str = DeviceFault.WRONG_WINDOW.value
    lesion_rate: float = 0.3
    #: Share of studies a radiologist reviews, and how often the read differs from the truth.
    sample_fraction: float = 0.5
    disagreement_rate: float = 0.02
    #: Studies announced per second (a steady city, not a burst).
    rate_per_s: float = 8.0
    seed: int = 4711
    alert_timeout_s: float = 300.0
    #: After the alert: wait for every Finding and report the final per-device figures.
    drain: bool = True
    drain_timeout_s: float = 180.0


def _reviewed_studies_until(truths: list[CityTruth], reviewed: set[str], device: str,
                            device_reviews: int) -> tuple[int, int]:
    """Studies and reviews, in announcement order, up to the ``device_reviews``-th reviewed
    study of ``device`` (the review that completed the alert's window)."""
    seen = total = 0
    for n, truth in enumerate(truths, 1):
        if truth.study_uid in reviewed:
            total += 1
            if truth.device_id == device:
                seen += 1
                if seen == device_reviews:
                    return n, total
    return len(truths), total


def _lesion(truth: CityTruth) -> bool:
    return truth.labels["lung_nodule"]


def _auc_by_device(truths: list[CityTruth], scores: dict[str, float]) -> dict[str, float | None]:
    by_device: dict[str, tuple[list[bool], list[float]]] = {}
    for t in truths:
        if t.study_uid in scores:
            labels, values = by_device.setdefault(t.device_id, ([], []))
            labels.append(_lesion(t))
            values.append(scores[t.study_uid])
    return {d: (round(roc_auc(y, s), 4) if 0 < sum(y) < len(y) else None)
            for d, (y, s) in sorted(by_device.items())}


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: dict[str, Any] = orjson.loads(resp.read())
    return body


def run_drift(cfg: DriftConfig, *, dicom_root: Path, bootstrap: str, quality_url: str,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """The drift scenario against a running pipeline; returns the measured figures.

    Alerts are taken from the worker's own GET /quality (other workers on a shared broker may
    publish alerts too) and then found on radiology.alerts.v1 with their CloudEvents headers.
    """
    folder = dicom_root / f"drift-{cfg.seed}-{uuid.uuid4().hex[:8]}"
    log(f"writing {cfg.studies} studies ({cfg.faulty_device}: {cfg.fault}) under {folder}")
    truths = generate_service_studies(
        folder, cfg.studies, seed=cfg.seed, prevalence={"lung_nodule": cfg.lesion_rate},
        model=CityModel(hospitals=cfg.hospitals, devices=cfg.devices,
                        device_mix=(("DX", 1.0),)),
        device_faults={cfg.faulty_device: cfg.fault})
    # Each hospital publishes its own folder with its configured id and device registry
    # (device ids are configuration, never StationName); the bus carries keyed study UIDs.
    key = secrets.token_bytes(32)
    devices = {t.device_id: t.device_id for t in truths}
    events: dict[str, dict[str, Any]] = {}
    keyed: dict[str, str] = {}
    for hospital in sorted({t.hospital_id for t in truths}):
        found = stage_announcements(build_announcements(
            folder / hospital, root=dicom_root, hospital_id=hospital, priority="routine",
            key=key, devices=devices, log=lambda _: None), dicom_root, log=lambda _: None)
        events.update((e["study_uid"], e) for e in found.events)
        keyed.update(found.study_uids)
    if len(keyed) != len(truths):
        raise RuntimeError(f"{len(truths) - len(keyed)} generated studies were not announced")
    truths = [replace(t, study_uid=keyed[t.study_uid]) for t in truths]
    reviews = {r["study_uid"]: r for r in simulate_city_reviews(
        truths, ReviewConfig(sample_fraction=cfg.sample_fraction,
                             disagreement_rate=cfg.disagreement_rate, seed=cfg.seed),
        reviewed_at=utc_now_rfc3339())}
    uids = [t.study_uid for t in truths]

    reader = OutcomeReader(bootstrap, (topics.ALERTS, topics.FINDINGS)).start()
    alert: dict[str, Any] | None = None
    seen_at: dict[str, Any] = {}
    start = time.monotonic()
    last_check = 0.0

    def check() -> None:
        nonlocal alert, last_check
        if alert is not None or time.monotonic() - last_check < 1.0:
            return
        last_check = time.monotonic()
        for body in _get_json(quality_url)["alerts"]:
            if body.get("device_id") == cfg.faulty_device:
                alert = body
                seen_at.update(seconds=round(time.monotonic() - start, 2),
                               findings=len({r.key for r in reader.on(topics.FINDINGS, uids)}))
                log(f"alert after {seen_at['seconds']}s: {orjson.dumps(alert).decode()}")

    try:
        with StudyPublisher(bootstrap) as studies, ReviewPublisher(bootstrap) as radiologists:
            for i, uid in enumerate(uids):
                reader.poll(max(0.0, start + i / cfg.rate_per_s - time.monotonic()))
                check()
                if alert is not None and "published" not in seen_at:
                    seen_at["published"] = i
                # Reviews go out with their study, so most wait in the monitor for the Finding.
                studies.publish(events[uid])
                if uid in reviews:
                    radiologists.publish(reviews[uid])
            studies.flush(30)
            radiologists.flush(30)
        seen_at.setdefault("published", len(uids))
        deadline = time.monotonic() + cfg.alert_timeout_s
        while alert is None and time.monotonic() < deadline:
            reader.poll(0.5)
            check()
        deadline = time.monotonic() + 30
        while alert is not None and time.monotonic() < deadline and not [
                r for r in reader.on(topics.ALERTS) if r.body == alert]:
            reader.poll(0.5)
        if cfg.drain:
            deadline = time.monotonic() + cfg.drain_timeout_s
            while (len({r.key for r in reader.on(topics.FINDINGS, uids)}) < len(uids)
                   and time.monotonic() < deadline):
                reader.poll(0.5)
            reader.poll(2.0)
        findings = reader.on(topics.FINDINGS, uids)
        on_bus = [r for r in reader.on(topics.ALERTS) if r.body == alert]
    finally:
        reader.close()

    report = _get_json(quality_url)
    ours = {t.device_id for t in truths}
    scores = {r.key: r.body["findings"][0]["score"] for r in findings
              if r.body["status"] == "ok" and r.body["findings"]}
    auc = _auc_by_device(truths, scores)
    normal = [t for t in truths if t.device_id != cfg.faulty_device]
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "alert": alert,
        "studies_reviewed": len(reviews),
        "findings_received": len(scores),
        "model_auc_vs_planted_truth": {
            "by_device": auc,
            "faulty_device": auc.get(cfg.faulty_device),
            "other_devices": round(roc_auc([_lesion(t) for t in normal if t.study_uid in scores],
                                           [scores[t.study_uid] for t in normal
                                            if t.study_uid in scores]), 4)
            if len({_lesion(t) for t in normal if t.study_uid in scores}) == 2 else None,
        },
        "alert_on_bus": {"key": on_bus[0].key, "ce_type": on_bus[0].headers.get(
            "ce_type", b"").decode()} if on_bus else None,
        # Device alerts naming a healthy device are false alarms; a service-level alert is not
        # (one device in four reading at chance does pull the whole service down).
        "false_device_alerts": [a for a in report["alerts"] if a.get("device_id") in ours
                                and a["device_id"] != cfg.faulty_device],
        "service_alerts": [a for a in report["alerts"] if "device_id" not in a],
        "quality_api": {"services": report["services"],
                        "devices": [d for d in report["devices"] if d["device_id"] in ours]},
    }
    if alert is not None:
        studies_n, reviews_n = _reviewed_studies_until(truths, set(reviews), cfg.faulty_device,
                                                       int(alert["samples"]))
        result["until_alert"] = {
            "device_reviews": alert["samples"],
            "reviews_all_devices": reviews_n,
            "studies": studies_n,
            "wall_clock": {"seconds": seen_at["seconds"], "studies_announced": seen_at["published"],
                           "findings_received": seen_at["findings"]},
        }
    return result


# --- running it as a benchmark: start what is missing and a worker of our own ------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_services() -> Iterator[None]:
    """Kafka and Triton via the deploy scripts; stop only what this run started."""
    started = []
    for name in ("kafka", "triton"):
        script = REPO_ROOT / "deploy" / f"{name}.sh"
        if subprocess.run([script, "status"], capture_output=True).returncode != 0:
            started.append(script)
        subprocess.run([script, "up"], check=True)
    try:
        yield
    finally:
        for script in reversed(started):
            subprocess.run([script, "stop"], check=False)


@contextmanager
def worker(bootstrap: str, root: Path, state: Path) -> Iterator[str]:
    """A real worker in its own consumer group that reads what is published from now on;
    yields its base URL."""
    web = _free_port()
    env = {**os.environ, "RADSTREAM_KAFKA": bootstrap,
           "RADSTREAM_APP_ID": f"radstream-drift-{uuid.uuid4().hex[:8]}",
           "RADSTREAM_WEB_PORT": str(web), "RADSTREAM_METRICS_PORT": str(_free_port()),
           "RADSTREAM_DICOM_ROOTS": str(root), "RADSTREAM_OFFSET_RESET": "latest",
           "RADSTREAM_DATADIR": str(state / "faust")}
    log = REPO_ROOT / "artifacts" / "drift-worker.log"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    proc = spawn_worker(env, log)
    base = f"http://127.0.0.1:{web}"
    try:
        if not wait_http(f"{base}/quality", 120):
            raise RuntimeError(f"worker did not serve {base}/quality; see {log}")
        wait_until_positioned(bootstrap, timeout_s=120)
        yield base
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    d = DriftConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=d.studies)
    p.add_argument("--fault", choices=[f.value for f in DeviceFault], default=d.fault)
    p.add_argument("--sample-fraction", type=float, default=d.sample_fraction)
    p.add_argument("--disagreement", type=float, default=d.disagreement_rate)
    p.add_argument("--rate", type=float, default=d.rate_per_s, help="studies per second")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cfg = replace(d, studies=args.studies, fault=args.fault, seed=args.seed,
                  sample_fraction=args.sample_fraction, disagreement_rate=args.disagreement,
                  rate_per_s=args.rate)
    bootstrap = Settings.from_env().kafka
    run_root = REPO_ROOT / ".state" / "bench-drift" / uuid.uuid4().hex[:8]
    root = run_root / "dicom"
    root.mkdir(parents=True)
    try:
        with local_services(), worker(bootstrap, root, run_root) as base:
            result = run_drift(cfg, dicom_root=root, bootstrap=bootstrap,
                               quality_url=f"{base}/quality")
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    until = result.get("until_alert")
    aucs = result["model_auc_vs_planted_truth"]
    print(f"\nalert naming {cfg.faulty_device}: "
          + (f"after {until['device_reviews']} reviews of that device, "
             f"{until['reviews_all_devices']} reviews in all, {until['studies']} studies"
             if until else "NONE within the timeout"))
    print(f"served model AUC vs planted truth: faulty device {aucs['faulty_device']}, "
          f"other devices {aucs['other_devices']} ({aucs['by_device']})")
    print(f"false device alerts: {len(result['false_device_alerts'])}, service-level alerts: "
          f"{len(result['service_alerts'])}; written to {args.out}")
    return 0 if until else 1


if __name__ == "__main__":
    sys.exit(main())
