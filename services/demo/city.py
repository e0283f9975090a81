"""A simulated group of hospitals publishing chest X-ray studies to a running pipeline.

Studies are real DICOM files written by the phantom generator (with planted lesions and the
ground truth kept aside), announced by the hospital-side publisher at a steady rate with a mix of
priorities, and followed to their outcomes. At the end it prints the city statistics from the
stats API, the latency the analysts would see, and the model's AUC against the planted truth.
"""

from __future__ import annotations

import random
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.demo.progress import Progress
from services.demo.reviews import ReviewConfig, publish_reviews, simulate_reviews
from services.ops.follow import OutcomeReader
from services.ops.probe import PROBE_HOSPITAL, wait_until_positioned
from services.publisher.announce import build_announcement
from services.publisher.producer import StudyPublisher
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import group_instances, scan_tree
from services.synth.generate import StudyTruth, generate_studies
from streams import topics
from streams.auc import roc_auc
from streams.cloudevents import utc_now_rfc3339

#: Share of each priority among announced studies (routine dominates, as in a real city).
PRIORITY_MIX = (("routine", 0.85), ("urgent", 0.10), ("emergency", 0.05))


@dataclass(frozen=True)
class CityConfig:
    duration_s: float = 60.0
    rate_per_s: float = 4.0
    hospitals: int = 8
    devices_per_hospital: int = 3
    lesion_rate: float = 0.3
    #: Share of studies a simulated radiologist reviews (feeds the quality monitor).
    review_fraction: float = 0.25
    seed: int = 2026
    drain_timeout_s: float = 90.0


def _priority(rng: random.Random) -> str:
    x = rng.random()
    for name, share in PRIORITY_MIX:
        if x < share:
            return name
        x -= share
    return PRIORITY_MIX[0][0]


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def prepare_studies(root: Path, cfg: CityConfig, progress: Progress) -> list[StudyTruth]:
    n = max(1, round(cfg.duration_s * cfg.rate_per_s))
    out = root / f"city-{cfg.seed}-{int(time.time())}"

    def on_progress(done: int, total: int) -> None:
        progress.update(f"writing DICOM studies {done}/{total}")

    truths = generate_studies(out, n, seed=cfg.seed, lesion_rate=cfg.lesion_rate,
                              hospitals=cfg.hospitals,
                              devices_per_hospital=cfg.devices_per_hospital,
                              on_progress=on_progress, reference_time=datetime.now(UTC))
    progress.done(f"wrote {len(truths)} DICOM studies under {out}")
    return truths


def _status_line(elapsed: float, published: int, total: int, reader: OutcomeReader,
                 uids: set[str]) -> str:
    findings = reader.on(topics.FINDINGS, uids)
    positives = sum(1 for f in findings if any(x["positive"] for x in f.body["findings"]))
    e2e = [r.body["end_to_end_s"] for r in reader.on(topics.LATENCY, uids)]
    return (f"[{elapsed:5.1f}s] published {published}/{total} | outcomes "
            f"{len(reader.resolved(uids))}/{published} | positive {positives} | dead letters "
            f"{len(reader.on(topics.DEADLETTER, uids))} | end-to-end p50 "
            f"{_quantile(e2e, 0.5):.2f}s p95 {_quantile(e2e, 0.95):.2f}s")


def run_city(cfg: CityConfig, *, dicom_root: Path, bootstrap: str, stats_url: str,
             key: bytes) -> dict[str, Any]:
    """Run the simulation; return a summary (also printed)."""
    progress = Progress()
    rng = random.Random(cfg.seed)
    truths = prepare_studies(dicom_root, cfg, progress)
    by_uid = {t.study_uid: t for t in truths}
    groups = {g.study_uid: g for g in group_instances(scan_tree(Path(truths[0].path).parents[3]))}
    pseudonymizer = Pseudonymizer(key)
    progress.update("waiting until the worker is positioned on every partition", force=True)
    wait_until_positioned(bootstrap)
    reader = OutcomeReader(bootstrap).start()
    uids: set[str] = set()
    start = time.monotonic()
    try:
        with StudyPublisher(bootstrap) as publisher:
            for i, truth in enumerate(truths):
                # Hold the steady arrival rate the configuration asks for, reading outcomes
                # while we wait.
                reader.poll(max(0.0, start + i / cfg.rate_per_s - time.monotonic()))
                event = build_announcement(groups[truth.study_uid], hospital_id=truth.hospital_id,
                                           pseudonymizer=pseudonymizer, priority=_priority(rng),
                                           published_at=utc_now_rfc3339())
                publisher.publish(event)
                uids.add(truth.study_uid)
                progress.update(_status_line(time.monotonic() - start, i + 1, len(truths),
                                             reader, uids))
            report = publisher.flush(30)
        deadline = time.monotonic() + cfg.drain_timeout_s
        while time.monotonic() < deadline and len(reader.resolved(uids)) < len(uids):
            reader.poll(0.5)
            progress.update(_status_line(time.monotonic() - start, len(uids), len(truths),
                                         reader, uids))
        progress.done(_status_line(time.monotonic() - start, len(uids), len(truths), reader,
                                   uids))
        reviews = simulate_reviews(truths, ReviewConfig(sample_fraction=cfg.review_fraction,
                                                        seed=cfg.seed),
                                   reviewed_at=utc_now_rfc3339())
        sent = publish_reviews(bootstrap, reviews)
        progress.done(f"simulated radiologists reviewed {sent} studies "
                      f"({cfg.review_fraction:.0%} sample) for the quality monitor")
        return summarize(reader, by_uid, uids, report.delivered, stats_url,
                         quality_url=stats_url.rsplit("/", 1)[0] + "/quality", reviews=sent)
    finally:
        reader.close()


def _fetch_stats(url: str, at_least: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """The stats API's answer once the aggregator has caught up with the findings we saw."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            stats: dict[str, Any] = orjson.loads(resp.read())
        if stats["city"]["ok"] >= at_least or time.monotonic() > deadline:
            return stats
        time.sleep(0.3)


def _fetch_quality(url: str, reviews: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """GET /quality once the monitor has joined the reviews we sent with their findings."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            quality: dict[str, Any] = orjson.loads(resp.read())
        joined = sum(row.get("reviews") or 0 for row in quality.get("services", ()))
        if joined >= reviews or time.monotonic() > deadline:
            return quality
        time.sleep(0.5)


def summarize(reader: OutcomeReader, truths: dict[str, StudyTruth], uids: set[str],
              delivered: int, stats_url: str, *, quality_url: str,
              reviews: int) -> dict[str, Any]:
    stats = _fetch_stats(stats_url, at_least=len(reader.on(topics.FINDINGS, uids)))
    labels, scores = [], []
    for rec in reader.on(topics.FINDINGS, uids):
        if rec.body["status"] == "ok" and rec.body["findings"]:
            labels.append(truths[rec.key].lesion)
            scores.append(rec.body["findings"][0]["score"])
    auc = roc_auc(labels, scores) if len(set(labels)) == 2 else float("nan")
    e2e = [r.body["end_to_end_s"] for r in reader.on(topics.LATENCY, uids)]
    summary = {
        "published": delivered,
        "resolved": len(reader.resolved(uids)),
        "deadletters": len(reader.on(topics.DEADLETTER, uids)),
        "auc_vs_planted_truth": auc,
        "end_to_end_s": {q: _quantile(e2e, v) for q, v in
                         (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "stats": stats,
        "quality": _fetch_quality(quality_url, reviews),
    }
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    stats = summary["stats"]
    city = stats["city"]
    print("\n=== radstream city statistics (from the stats API) ===")
    print(f"studies {city['studies']}  findings {city['findings']}  ok {city['ok']}  "
          f"positive {city['positive']}  technical_defect {city['technical_defect']}  "
          f"not_applicable {city['not_applicable']}")
    print(f"{'hospital':<10}{'studies':>9}{'ok':>6}{'positive':>10}{'defects':>9}"
          f"{'n/a':>6}")
    for hospital, row in stats["hospitals"].items():
        print(f"{hospital:<10}{row['studies']:>9}{row['ok']:>6}{row['positive']:>10}"
              f"{row['technical_defect']:>9}{row['not_applicable']:>6}")
    if PROBE_HOSPITAL in stats["hospitals"]:
        print(f"({PROBE_HOSPITAL}: readiness probes, one per partition, answered not_applicable)")
    for service, row in stats["services"].items():
        rate = row["positive"] / row["ok"] if row["ok"] else 0.0
        print(f"service {service}: {row['findings']} findings, positive rate {rate:.1%}")
    q = summary["end_to_end_s"]
    print(f"end-to-end latency: p50 {q['p50']:.2f}s  p90 {q['p90']:.2f}s  p99 {q['p99']:.2f}s")
    print(f"outcomes: {summary['resolved']}/{summary['published']} studies resolved, "
          f"{summary['deadletters']} dead letters")
    print(f"model AUC against the planted ground truth: {summary['auc_vs_planted_truth']:.3f}")
    print("\n=== clinical quality (quality monitor, against simulated radiologists) ===")
    for row in summary["quality"].get("services", ()):
        ci = row.get("auc_ci") or [None, None]
        auc = "n/a" if row.get("auc") is None else f"{row['auc']:.3f}"
        ci_text = "" if ci[0] is None else f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})"
        sens, spec = row.get("sensitivity"), row.get("specificity")
        rates = "" if sens is None or spec is None else (
            f", sensitivity {sens:.2f}, specificity {spec:.2f}")
        print(f"{row['service']}/{row['finding']}: {row['reviews']} reviews, AUC {auc}{ci_text}"
              f"{rates}")
    alerts = summary["quality"].get("alerts", [])
    print(f"quality alerts: {len(alerts)}" + "".join(
        f"\n  {a['kind']} {a['service']} {a.get('device_id', '')} value {a['value']:.3f}"
        for a in alerts[:5]))
