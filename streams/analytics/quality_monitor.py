"""Clinical quality monitoring of AI services, as pure logic (no Kafka, no clock reads).

After deployment every AI service is watched on three things: its technical-defect rate, its
agreement with radiologists (ROC AUC with a confidence interval, and sensitivity/specificity at
the operating threshold) on reviewed studies, and, per diagnostic device, whether one modality's
images have drifted away from what the model handles. The agent in streams/agents/quality.py
joins radiologist reviews with Finding scores (streams/analytics/review_join.py) and feeds the
:class:`QualityMonitor` here; the monitor keeps sliding windows (review_windows.py) of the
agreement statistics (agreement.py) and says when an alert is due.

Alert rules (thresholds in streams/settings.py):
- ``auc_below_floor``: the AUC over the last N reviews of a service × finding (or of a
  service × finding × device) is below the floor, once the window holds at least M reviews and
  both radiologist-positive and radiologist-negative studies. "Below" means confidently below:
  ``AUC + z·SE < floor`` (z = 1.96 by default: the whole 95 % interval lies under the floor;
  z = 0 is the bare point estimate). A device with a healthy model wobbles around its true AUC
  by several hundredths over 40..80 reviews; without the margin such wobbles would page people.
- ``defect_rate_high``: the share of technical_defect Findings over the last K Findings of a
  service (or service × device) is above the ceiling, once at least ``defect_min_findings``.
An alert is raised once; it is raised again only after the value has recovered past a margin
and crossed again, or after a whole window of new observations still fails (once per window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from streams.analytics.review_windows import (
    DefectWindow,
    Latch,
    Observation,
    ReviewSummary,
    ReviewWindow,
    Subject,
    summarize_reviews,
)

AlertKind = Literal["auc_below_floor", "defect_rate_high"]


@dataclass(frozen=True)
class QualityThresholds:
    #: AUC floor; when the AUC is confidently below it an auc_below_floor alert is due.
    auc_floor: float
    #: Standard errors the AUC must lie below the floor by (0: the point estimate decides).
    auc_z: float
    #: Reviews a window needs (both classes present) before the AUC rule applies (M).
    min_reviews: int
    #: Sliding window of the last N reviews per service × finding.
    window: int
    #: Sliding window of the last N reviews per service × finding × device.
    device_window: int
    #: Technical-defect share above which defect_rate_high is due.
    defect_ceiling: float
    #: Sliding window of the last K Findings per service (and per service × device).
    defect_window: int
    #: Findings a defect window needs before the defect rule applies.
    defect_min_findings: int
    #: How far a value must recover past its threshold before the alert re-arms.
    rearm_margin: float


def quality_alert(subject: Subject, kind: AlertKind, *, value: float, threshold: float,
                  window_kind: str, window_size: int, window_start: str, samples: int,
                  raised_at: str, ci: tuple[float, float] | None = None,
                  model: dict[str, str] | None = None) -> dict[str, Any]:
    """A QualityAlert body (schemas/quality-alert.v1.json)."""
    body: dict[str, Any] = {"service": subject.service}
    if subject.finding is not None:
        body["finding"] = subject.finding
    if subject.device_id is not None:
        body["device_id"] = subject.device_id
    body.update({"kind": kind, "value": round(value, 6), "threshold": threshold,
                 "window": {"kind": window_kind, "start": window_start, "size": window_size},
                 "samples": samples, "raised_at": raised_at})
    if ci is not None:
        body["ci"] = [round(ci[0], 6), round(ci[1], 6)]
    if model is not None:
        body["model"] = dict(model)
    return body


class QualityMonitor:
    """Sliding windows per service × finding, per device, and per service for defects, with
    the alert rules and their hysteresis. Feed it observations; it returns the alerts due."""

    def __init__(self, thresholds: QualityThresholds) -> None:
        self.t = thresholds
        self._reviews: dict[Subject, ReviewWindow] = {}
        self._defects: dict[Subject, DefectWindow] = {}
        self._models: dict[str, dict[str, str]] = {}

    # feeding ----------------------------------------------------------------------------------

    def add_review(self, subject: Subject, obs: Observation, *,
                   now: str) -> list[dict[str, Any]]:
        """Add a joined review to the service × finding window and, when ``subject`` names a
        device, to that device's window; return the alerts now due."""
        if subject.finding is None:
            raise ValueError("a review is about one finding")
        alerts: list[dict[str, Any]] = []
        targets = [Subject(subject.service, subject.finding)]
        if subject.device_id is not None:
            targets.append(subject)
        for target in targets:
            size = self.t.device_window if target.device_id is not None else self.t.window
            w = self._reviews.setdefault(target, ReviewWindow(deque(maxlen=size)))
            w.reviews.append(obs)
            alert = self._check_auc(target, w, size, now)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def add_finding(self, service: str, device_id: str | None, *, defective: bool, at: str,
                    now: str, model: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Count one ok/technical_defect Finding; return the defect alerts now due."""
        if model is not None:
            self._models[service] = dict(model)
        alerts = []
        targets = [Subject(service)] + ([Subject(service, device_id=device_id)]
                                        if device_id is not None else [])
        for target in targets:
            w = self._defects.setdefault(target,
                                         DefectWindow(deque(maxlen=self.t.defect_window)))
            w.defects.append((defective, at))
            alert = self._check_defects(target, w, now)
            if alert is not None:
                alerts.append(alert)
        return alerts

    # rules ------------------------------------------------------------------------------------

    def _latch(self, latch: Latch, *, failing: bool, recovered: bool, window: int) -> bool:
        """Hysteresis: fire on the first failing observation, again only after recovery or
        after a whole window of observations that kept failing."""
        if latch.raised:
            latch.since += 1
            if recovered:
                latch.raised, latch.since = False, 0
            elif failing and latch.since >= window:
                latch.since = 0
                return True
            return False
        if failing:
            latch.raised, latch.since = True, 0
            return True
        return False

    def _check_auc(self, subject: Subject, w: ReviewWindow, size: int,
                   now: str) -> dict[str, Any] | None:
        s = summarize_reviews(w.reviews)
        if s.auc is None or s.reviews < self.t.min_reviews:
            return None
        floor = self.t.auc_floor
        if self.t.auc_z > 0:
            failing = s.auc_se is not None and s.auc + self.t.auc_z * s.auc_se < floor
        else:
            failing = s.auc < floor
        fire = self._latch(w.latch, failing=failing,
                           recovered=s.auc >= floor + self.t.rearm_margin, window=size)
        if not fire:
            return None
        return quality_alert(subject, "auc_below_floor", value=s.auc, threshold=floor,
                             window_kind="reviews", window_size=size,
                             window_start=s.start or now, samples=s.reviews, raised_at=now,
                             ci=s.auc_ci, model=self._models.get(subject.service))

    def _check_defects(self, subject: Subject, w: DefectWindow,
                       now: str) -> dict[str, Any] | None:
        rate = w.rate()
        if rate is None or len(w.defects) < self.t.defect_min_findings:
            return None
        ceiling = self.t.defect_ceiling
        fire = self._latch(w.latch, failing=rate > ceiling,
                           recovered=rate <= ceiling - self.t.rearm_margin,
                           window=self.t.defect_window)
        if not fire:
            return None
        return quality_alert(subject, "defect_rate_high", value=rate, threshold=ceiling,
                             window_kind="findings", window_size=self.t.defect_window,
                             window_start=w.defects[0][1], samples=len(w.defects),
                             raised_at=now, model=self._models.get(subject.service))

    # reading ----------------------------------------------------------------------------------

    def defect_rate(self, service: str) -> float | None:
        w = self._defects.get(Subject(service))
        return w.rate() if w else None

    def summary(self, subject: Subject) -> ReviewSummary:
        w = self._reviews.get(subject)
        return summarize_reviews(w.reviews if w else ())

    def report(self, monitored: Iterable[tuple[str, str, float]],
               alerts: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """The GET /quality body. ``monitored``: (service, finding, operating threshold) of every
        catalogued finding, listed even before its first review."""
        known: dict[tuple[str, str], float | None] = {(s, f): t for s, f, t in monitored}
        for subject in self._reviews:
            if subject.device_id is None and subject.finding is not None:
                known.setdefault((subject.service, subject.finding), None)
        services = []
        for (service, finding), threshold in sorted(known.items()):
            s = self.summary(Subject(service, finding))
            services.append({
                "service": service, "finding": finding, "reviews": s.reviews,
                "auc": _r(s.auc), "auc_ci": [_r(s.auc_ci[0]), _r(s.auc_ci[1])] if s.auc_ci
                else None, "sensitivity": _r(s.sensitivity), "specificity": _r(s.specificity),
                "threshold": threshold, "defect_rate": _r(self.defect_rate(service)),
            })
        devices = []
        for subject in sorted((s for s in self._reviews if s.device_id is not None),
                              key=lambda s: (s.service, s.finding or "", s.device_id or "")):
            s = self.summary(subject)
            devices.append({"service": subject.service, "finding": subject.finding,
                            "device_id": subject.device_id, "reviews": s.reviews,
                            "auc": _r(s.auc)})
        return {"services": services, "devices": devices, "alerts": list(alerts)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
