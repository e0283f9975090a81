"""The simulated city, end to end against a running pipeline: every AI service of the catalog.

Studies are real DICOM series written by the city simulator (services/synth/city.py: 150
hospitals and 1,200 devices by default, a modality mix, a day/night arrival curve, priorities,
not-applicable studies and technical defects at configurable rates, ground truth kept aside).
The hospital-side publisher announces them (PHI becomes keyed pseudonyms) at the simulator's
arrival times; the demo follows every study to its outcome, shows per-service progress, checks
each outcome against what the simulator planted, and prints the city statistics, time to result
by priority, each model's AUC against the planted truth and the quality monitor's view.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.demo.reviews import ReviewConfig, publish_reviews, simulate_city_reviews
from services.ops.follow import OutcomeReader, Record
from services.ops.probe import PROBE_HOSPITAL, wait_until_positioned
from services.ops.progress import Progress
from services.publisher.announce import build_announcement
from services.publisher.producer import StudyPublisher
from services.publisher.pseudonym import Pseudonymizer
from services.publisher.scan import group_instances, scan_tree
from services.publisher.stage import stage_announcement
from services.synth.city import (
    CityModel,
    CityTruth,
    Load,
    apply_announcement_overrides,
    expected_outcomes,
    generate_city,
)
from streams.analytics.auc import roc_auc
from streams.contract import topics
from streams.contract.catalog import NOT_APPLICABLE_SERVICE, catalog
from streams.contract.cloudevents import utc_now_rfc3339


@dataclass(frozen=True)
class CityConfig:
    studies: int = 600
    #: Announcements per second; None with ``times_real`` set plays N x the city's real rate.
    rate_per_s: float | None = 10.0
    times_real: float | None = None
    #: Play the 24 h arrival curve over this many seconds (default: over the whole run).
    compress_day_s: float | None = None
    hospitals: int = 150
    devices: int = 1200
    defect_rate: float = 0.05
    not_applicable_rate: float = 0.05
    #: Share of readable studies a simulated radiologist reviews (feeds the quality monitor).
    review_fraction: float = 0.25
    seed: int = 2026
    drain_timeout_s: float = 180.0
    services: tuple[str, ...] | None = None

    def load(self) -> Load:
        rate = Load(rate_per_s=self.rate_per_s, times_real=None if self.rate_per_s
                    else self.times_real).rate
        day = self.compress_day_s or max(1.0, self.studies / rate)
        if self.rate_per_s:
            return Load(rate_per_s=self.rate_per_s, compress_day_s=day)
        return Load(times_real=self.times_real, compress_day_s=day)


@dataclass
class Accounting:
    """Each study's outcomes against what the simulator planted."""

    expected: int = 0
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    duplicates: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return len(self.missing)


def outcomes_by_study(records: Iterable[Record]) -> tuple[dict[str, dict[str, str]], int]:
    """study_uid -> {service: "ok" | "technical_defect:<reason>" | "not_applicable" |
    "deadletter:<reason>"}, and how many outcome records repeated one already seen."""
    got: dict[str, dict[str, str]] = defaultdict(dict)
    duplicates = 0
    for r in records:
        if r.topic == topics.FINDINGS.name:
            service, status = r.body["service"], r.body["status"]
            outcome = (f"{status}:{r.body['defect_reason']}" if status == "technical_defect"
                       else status)
        elif r.topic == topics.DEADLETTER.name:
            service = r.body.get("service") or "router"
            outcome = f"deadletter:{r.body['reason']}"
        else:
            continue
        if service in got[r.key]:
            duplicates += 1
        got[r.key][service] = outcome
    return got, duplicates


def account(truths: Sequence[CityTruth], reader: OutcomeReader) -> Accounting:
    uids = {t.study_uid for t in truths}
    got, duplicates = outcomes_by_study(
        reader.on(topics.FINDINGS, uids) + reader.on(topics.DEADLETTER, uids))
    acc = Accounting(expected=len(truths), duplicates=duplicates)
    for t in truths:
        want = expected_outcomes(t)
        have = got.get(t.study_uid, {})
        if not have:
            acc.missing.append(t.study_uid)
        elif have == want:
            acc.matched += 1
        else:
            acc.wrong.append((t.study_uid, want, have))
        for outcome in have.values():
            acc.by_kind[outcome.split(":")[0]] += 1
    return acc


def prepare_city(root: Path, cfg: CityConfig, progress: Progress) -> tuple[Path, list[CityTruth]]:
    out = root / f"city-{cfg.seed}-{int(time.time())}"
    started = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        rate = done / max(1e-6, time.monotonic() - started)
        progress.update(f"writing DICOM studies {done}/{total} ({rate:.0f}/s)")

    truths = generate_city(out, cfg.studies, seed=cfg.seed,
                           model=CityModel(hospitals=cfg.hospitals, devices=cfg.devices),
                           load=cfg.load(), defect_rate=cfg.defect_rate,
                           not_applicable_rate=cfg.not_applicable_rate, services=cfg.services,
                           on_progress=on_progress, reference_time=datetime.now(UTC))
    mix = Counter(t.service for t in truths)
    progress.done(f"wrote {len(truths)} studies under {out} in "
                  f"{time.monotonic() - started:.0f}s: "
                  + ", ".join(f"{s} {n}" for s, n in mix.most_common()))
    return out, truths


def announcements(out: Path, truths: Sequence[CityTruth], pseudonymizer: Pseudonymizer,
                  root: Path) -> tuple[list[tuple[float, dict[str, Any]]], list[CityTruth]]:
    """(announce offset, StudyAnnounced body) per study, built by the hospital-side publisher
    from the DICOM headers plus what the hospital's RIS overrides (the ordered body part), with
    each study's files staged under ``root/<hospital_id>/`` as the publisher does; and the
    truths with the keyed study UIDs the bus carries (the demo follows studies by them)."""
    root = root.resolve()
    groups = {g.study_uid: g for g in group_instances(scan_tree(out))}
    events = []
    keyed = []
    for t in truths:
        group = groups[t.study_uid]
        event = build_announcement(group, hospital_id=t.hospital_id, root=root,
                                   pseudonymizer=pseudonymizer, priority=t.priority,
                                   device_id=t.device_id, published_at=utc_now_rfc3339())
        stage_announcement(root, group, event)
        events.append((t.announce_at_s, apply_announcement_overrides(event, t)))
        keyed.append(dataclasses.replace(t, study_uid=event["study_uid"]))
    return events, keyed


def publish_paced(bootstrap: str, events: Sequence[tuple[float, dict[str, Any]]],
                  reader: OutcomeReader, on_tick: Any = None) -> int:
    """Publish each event at its offset from now, reading outcomes while waiting; returns how
    many the broker acknowledged."""
    start = time.monotonic()
    with StudyPublisher(bootstrap) as publisher:
        for offset, event in events:
            reader.poll(max(0.0, start + offset - time.monotonic()))
            event["published_at"] = utc_now_rfc3339()
            publisher.publish(event)
            if on_tick is not None:
                on_tick()
        report = publisher.flush(60)
    return int(report.delivered)


class ServiceProgress:
    """Per-service progress: expected outcomes, resolved so far, defects, positives."""

    def __init__(self, truths: Sequence[CityTruth], progress: Progress,
                 every_s: float = 10.0) -> None:
        self._truths = truths
        self._expected = Counter(s for t in truths for s in expected_outcomes(t))
        self._progress = progress
        self._every_s = every_s
        self._last = 0.0
        self.started = time.monotonic()

    def table(self, reader: OutcomeReader) -> str:
        uids = {t.study_uid for t in self._truths}
        got, _ = outcomes_by_study(
            reader.on(topics.FINDINGS, uids) + reader.on(topics.DEADLETTER, uids))
        done: Counter[str] = Counter()
        defects: Counter[str] = Counter()
        for outcomes in got.values():
            for service, outcome in outcomes.items():
                done[service] += 1
                defects[service] += outcome.startswith(("technical_defect", "deadletter"))
        lines = [f"{'service':<16}{'done':>11}{'defects':>9}"]
        for service in [s.id for s in catalog()] + [NOT_APPLICABLE_SERVICE]:
            if self._expected[service] or done[service]:
                bar = "#" * int(10 * done[service] / max(1, self._expected[service]))
                lines.append(f"{service:<16}{done[service]:>5}/{self._expected[service]:<5}"
                             f"{defects[service]:>9}  {bar:<10}")
        return "\n".join(lines)

    def tick(self, reader: OutcomeReader, published: int) -> None:
        uids = {t.study_uid for t in self._truths}
        resolved = len(reader.resolved(uids))
        elapsed = time.monotonic() - self.started
        self._progress.update(f"[{elapsed:5.0f}s] published {published}/{len(self._truths)}"
                              f" | resolved {resolved}")
        if elapsed - self._last >= self._every_s:
            self._last = elapsed
            self._progress.done(f"[{elapsed:5.0f}s] per-service progress\n{self.table(reader)}")


def run_city(cfg: CityConfig, *, dicom_root: Path, bootstrap: str, stats_url: str,
             key: bytes) -> dict[str, Any]:
    """Run the simulation; return a summary (also printed)."""
    progress = Progress()
    out, truths = prepare_city(dicom_root, cfg, progress)
    events, truths = announcements(out, truths, Pseudonymizer(key), dicom_root)
    progress.update("waiting until the worker is positioned on every partition", force=True)
    wait_until_positioned(bootstrap)
    reader = OutcomeReader(bootstrap).start()
    uids = {t.study_uid for t in truths}
    view = ServiceProgress(truths, progress)
    published = 0
    try:
        def tick() -> None:
            nonlocal published
            published += 1
            view.tick(reader, published)

        delivered = publish_paced(bootstrap, events, reader, tick)
        deadline = time.monotonic() + cfg.drain_timeout_s
        while time.monotonic() < deadline and len(reader.resolved(uids)) < len(uids):
            reader.poll(0.5)
            view.tick(reader, published)
        reader.poll(2.0)  # a duplicate, if the pipeline made one, shows up too
        progress.done(f"per-service outcomes\n{view.table(reader)}")
        reviews = simulate_city_reviews(truths, ReviewConfig(sample_fraction=cfg.review_fraction,
                                                             seed=cfg.seed),
                                        reviewed_at=utc_now_rfc3339())
        sent = publish_reviews(bootstrap, reviews)
        progress.done(f"simulated radiologists sent {sent} reviews "
                      f"({cfg.review_fraction:.0%} of readable studies) to the quality monitor")
        summary = summarize(truths, reader, delivered, stats_url,
                            quality_url=stats_url.rsplit("/", 1)[0] + "/quality", reviews=sent)
    finally:
        reader.close()
    print_summary(summary)
    return summary


def model_aucs(truths: Sequence[CityTruth], findings: Iterable[Record]) -> dict[str, float]:
    """Per service/finding AUC of the served models against the planted labels."""
    by_uid = {t.study_uid: t for t in truths}
    pairs: dict[str, tuple[list[bool], list[float]]] = defaultdict(lambda: ([], []))
    for rec in findings:
        truth = by_uid.get(rec.key)
        if truth is None or rec.body["status"] != "ok" or rec.body["service"] != truth.service:
            continue
        for f in rec.body["findings"]:
            if f["code"] in truth.labels:
                labels, scores = pairs[f"{truth.service}/{f['code']}"]
                labels.append(bool(truth.labels[f["code"]]))
                scores.append(float(f["score"]))
    return {k: roc_auc(y, s) for k, (y, s) in sorted(pairs.items()) if len(set(y)) == 2}


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, Any] = orjson.loads(resp.read())
    return data


def _wait_json(url: str, ready: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        data = _get_json(url)
        if ready(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summarize(truths: Sequence[CityTruth], reader: OutcomeReader, delivered: int,
              stats_url: str, *, quality_url: str, reviews: int) -> dict[str, Any]:
    uids = {t.study_uid for t in truths}
    findings = reader.on(topics.FINDINGS, uids)
    stats = _wait_json(stats_url, lambda s: s["city"]["findings"] >= len(findings), 20.0)
    quality = _wait_json(quality_url, lambda q: sum(
        row.get("reviews") or 0 for row in q.get("services", ())) >= reviews, 20.0)
    latency = reader.on(topics.LATENCY, uids)
    by_priority: dict[str, list[float]] = defaultdict(list)
    for r in latency:
        by_priority[r.body["priority"]].append(r.body["end_to_end_s"])
    return {
        "published": delivered,
        "resolved": len(reader.resolved(uids)),
        "accounting": account(truths, reader),
        "model_auc": model_aucs(truths, findings),
        "time_to_result_s": {p: {"n": len(v), "p50": _quantile(v, 0.5),
                                 "p95": _quantile(v, 0.95)}
                             for p, v in sorted(by_priority.items())},
        "stats": stats,
        "quality": quality,
    }


def print_summary(summary: dict[str, Any]) -> None:
    stats = summary["stats"]
    city = stats["city"]
    acc: Accounting = summary["accounting"]
    print("\n=== radstream city statistics (from the stats API) ===")
    print(f"studies {city['studies']}  findings {city['findings']}  ok {city['ok']}  "
          f"positive {city['positive']}  technical_defect {city['technical_defect']}  "
          f"not_applicable {city['not_applicable']}  hospitals {len(stats['hospitals'])}")
    print(f"{'service':<16}{'findings':>9}{'ok':>6}{'positive':>10}{'defects':>9}")
    for service, row in sorted(stats["services"].items()):
        print(f"{service:<16}{row['findings']:>9}{row['ok']:>6}{row['positive']:>10}"
              f"{row['technical_defect']:>9}")
    if PROBE_HOSPITAL in stats["hospitals"]:
        print(f"({PROBE_HOSPITAL}: readiness probes, one per partition, answered not_applicable)")
    print("time to result by priority (announcement to Finding):")
    for priority, q in summary["time_to_result_s"].items():
        print(f"  {priority:<10} n={q['n']:<5} p50 {q['p50']:.2f}s  p95 {q['p95']:.2f}s")
    print(f"accounted for: {acc.matched}/{acc.expected} studies match the planted ground truth; "
          f"{acc.lost} without an outcome, {len(acc.wrong)} with another outcome, "
          f"{acc.duplicates} duplicate outcome records; outcomes by kind: "
          + ", ".join(f"{k} {v}" for k, v in sorted(acc.by_kind.items())))
    for uid, want, have in acc.wrong[:5]:
        print(f"  {uid}: expected {want}, got {have}")
    print("model AUC against the planted ground truth:")
    for key, auc in summary["model_auc"].items():
        print(f"  {key:<44} {auc:.3f}")
    print("\n=== clinical quality (quality monitor, against simulated radiologists) ===")
    for row in summary["quality"].get("services", ()):
        ci = row.get("auc_ci") or [None, None]
        auc = "n/a" if row.get("auc") is None else f"{row['auc']:.3f}"
        ci_text = "" if ci[0] is None else f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})"
        print(f"  {row['service']}/{row['finding']}: {row['reviews']} reviews, AUC {auc}"
              f"{ci_text}")
    alerts = summary["quality"].get("alerts", [])
    print(f"quality alerts: {len(alerts)}" + "".join(
        f"\n  {a['kind']} {a['service']} {a.get('device_id', '')} value {a['value']:.3f}"
        for a in alerts[:5]))
