"""Clinical quality monitoring of AI services, as pure logic (no Kafka, no clock reads).

After deployment every AI service is watched on three things: its technical-defect rate, its
agreement with radiologists (ROC AUC with a confidence interval, and sensitivity/specificity at
the operating threshold) on reviewed studies, and, per diagnostic device, whether one modality's
images have drifted away from what the model handles. The agent in streams/agents/quality.py
joins radiologist reviews with Finding scores and feeds the :class:`QualityMonitor` here; the
monitor keeps sliding windows and says when an alert is due.

AUC confidence interval: DeLong, DeLong & Clarke-Pearson (1988) variance of the Mann-Whitney
AUC, from the structural components computed with midranks in O(n log n) (the Sun & Xu 2014
formulation), and a normal-approximation interval ``AUC ± z·SE`` clipped to [0, 1].

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import orjson

from streams.analytics.auc import roc_auc
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate

#: Two-sided 95 % normal quantile.
Z_95 = 1.959963984540054

AlertKind = Literal["auc_below_floor", "defect_rate_high"]


# --- statistics --------------------------------------------------------------------------------

def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def delong_components(labels: Sequence[bool] | np.ndarray,
                      scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (V10 over positives, V01 over negatives).

    V10[i] is the share of negatives a positive outscores (ties one half), V01[j] the share of
    positives that outscore a negative; both average to the AUC.
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise ValueError("DeLong components need at least one positive and one negative")
    combined = _midranks(np.concatenate([pos, neg]))
    v10 = (combined[:m] - _midranks(pos)) / n
    v01 = 1.0 - (combined[m:] - _midranks(neg)) / m
    return v10, v01


def delong_variance(labels: Sequence[bool] | np.ndarray,
                    scores: Sequence[float] | np.ndarray) -> float:
    """Variance of the AUC estimate (DeLong 1988): S10/m + S01/n.

    Raises:
        ValueError: with fewer than two studies of either class (no sample variance then).
    """
    v10, v01 = delong_components(labels, scores)
    if v10.size < 2 or v01.size < 2:
        raise ValueError("DeLong variance needs at least two positives and two negatives")
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


@dataclass(frozen=True)
class AucEstimate:
    auc: float
    #: Standard error (DeLong); None when the variance is undefined.
    se: float | None
    #: 95 % interval (DeLong, normal approximation, clipped to [0, 1]); None when the variance
    #: is undefined (fewer than two studies of a class).
    ci: tuple[float, float] | None


def auc_with_ci(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray,
                z: float = Z_95) -> AucEstimate:
    auc = roc_auc(labels, scores)
    try:
        se = float(np.sqrt(delong_variance(labels, scores)))
    except ValueError:
        return AucEstimate(auc, None, None)
    return AucEstimate(auc, se, (max(0.0, auc - z * se), min(1.0, auc + z * se)))


def sensitivity_specificity(truth: Sequence[bool],
                            predicted: Sequence[bool]) -> tuple[float | None, float | None]:
    """Sensitivity and specificity of ``predicted`` against ``truth``; None where a class is
    absent from ``truth``."""
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t and p)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t and not p)
    tn = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and not p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and p)
    return (tp / (tp + fn) if tp + fn else None, tn / (tn + fp) if tn + fp else None)


# --- windows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    """One reviewed study: the AI's score and call against the radiologist's read."""

    score: float
    radiologist_positive: bool
    model_positive: bool
    #: When the review was made (RFC 3339); the oldest in a window is the window's start.
    at: str


@dataclass(frozen=True)
class ReviewSummary:
    reviews: int
    positives: int
    auc: float | None
    auc_se: float | None
    auc_ci: tuple[float, float] | None
    sensitivity: float | None
    specificity: float | None
    start: str | None


def summarize_reviews(window: Iterable[Observation]) -> ReviewSummary:
    obs = list(window)
    truth = [o.radiologist_positive for o in obs]
    positives = sum(truth)
    sens, spec = sensitivity_specificity(truth, [o.model_positive for o in obs])
    estimate = (auc_with_ci(truth, [o.score for o in obs])
                if 0 < positives < len(obs) else None)
    return ReviewSummary(len(obs), positives, estimate.auc if estimate else None,
                         estimate.se if estimate else None, estimate.ci if estimate else None,
                         sens, spec,
                         obs[0].at if obs else None)


@dataclass
class _Latch:
    """Alert state of one (rule, subject): raised or not, and observations since raised."""

    raised: bool = False
    since: int = 0


@dataclass
class _Windows:
    reviews: deque[Observation]
    latch: _Latch = field(default_factory=_Latch)


@dataclass
class _DefectWindow:
    defects: deque[tuple[bool, str]]
    latch: _Latch = field(default_factory=_Latch)

    def rate(self) -> float | None:
        return (sum(d for d, _ in self.defects) / len(self.defects)) if self.defects else None


# --- the monitor -------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Subject:
    """What an alert or a window is about: a service, a finding code, optionally a device."""

    service: str
    finding: str | None = None
    device_id: str | None = None


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
        self._reviews: dict[Subject, _Windows] = {}
        self._defects: dict[Subject, _DefectWindow] = {}
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
            w = self._reviews.setdefault(target, _Windows(deque(maxlen=size)))
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
                                         _DefectWindow(deque(maxlen=self.t.defect_window)))
            w.defects.append((defective, at))
            alert = self._check_defects(target, w, now)
            if alert is not None:
                alerts.append(alert)
        return alerts

    # rules ------------------------------------------------------------------------------------

    def _latch(self, latch: _Latch, *, failing: bool, recovered: bool, window: int) -> bool:
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

    def _check_auc(self, subject: Subject, w: _Windows, size: int,
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

    def _check_defects(self, subject: Subject, w: _DefectWindow,
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


# --- joining reviews with Finding scores -------------------------------------------------------
# The agent keeps one entry per "study_uid|service" in a table co-partitioned with both topics;
# these functions are its state transitions (plain JSON values, so the table can persist them).

#: Largest Review body accepted (bytes); checked before the body is parsed.
MAX_REVIEW_BYTES = 64 * 1024


def join_key(study_uid: str, service: str) -> str:
    return f"{study_uid}|{service}"


def parse_review(raw: bytes | None) -> dict[str, Any]:
    """Decode and validate one Review body, or raise InputRejected with its reason."""
    if not raw:
        raise InputRejected(Reason.INVALID_JSON, "empty message body")
    if len(raw) > MAX_REVIEW_BYTES:
        raise InputRejected(Reason.PAYLOAD_TOO_LARGE,
                            f"review of {len(raw)} bytes exceeds {MAX_REVIEW_BYTES}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputRejected(Reason.INVALID_JSON, f"not JSON: {exc.msg}") from None
    validate(EventKind.REVIEW, body)
    return cast(dict[str, Any], body)


@dataclass(frozen=True)
class Joined:
    """A review matched with the score it judges: one observation for the windows."""

    subject: Subject
    observation: Observation


def _join(finding: dict[str, Any], service: str, review: dict[str, Any]) -> Joined | None:
    scored = finding["scores"].get(review["code"])
    if finding["status"] != "ok" or scored is None:
        return None  # a defective study or a code this service does not report: nothing to judge
    score, positive = scored
    return Joined(Subject(service, review["code"], finding["device_id"]),
                  Observation(float(score), bool(review["positive"]), bool(positive),
                              review["at"]))


def record_finding(entry: dict[str, Any] | None,
                   finding: dict[str, Any]) -> tuple[dict[str, Any], list[Joined], bool]:
    """Store a Finding's scores in its join entry and match the reviews that waited for it.

    Returns the new entry, the joined observations, and whether the Finding was new (a
    redelivered or duplicated Finding changes nothing and must not be counted twice).
    """
    entry = dict(entry or {})
    if "finding" in entry:
        return entry, [], False
    entry["finding"] = {
        "device_id": finding.get("device_id"),
        "status": finding["status"],
        "scores": {f["code"]: [f["score"], f["positive"]] for f in finding["findings"]},
    }
    joined = []
    done = list(entry.get("joined", []))
    for review in entry.pop("pending", []):
        if review["code"] in done:
            continue
        done.append(review["code"])
        j = _join(entry["finding"], finding["service"], review)
        if j is not None:
            joined.append(j)
    entry["joined"] = done
    return entry, joined, True


def record_review(entry: dict[str, Any] | None,
                  review: dict[str, Any]) -> tuple[dict[str, Any], list[Joined]]:
    """Match a review with its Finding, or keep it pending until the Finding arrives.

    The first review of a study × service × code counts; later ones (a redelivery, a second
    read) are ignored so that a study weighs once in every window.
    """
    entry = dict(entry or {})
    code = review["code"]
    compact = {"code": code, "positive": review["radiologist_positive"],
               "at": review["reviewed_at"]}
    if code in entry.get("joined", []) or any(
            p["code"] == code for p in entry.get("pending", [])):
        return entry, []
    if "finding" not in entry:
        entry["pending"] = [*entry.get("pending", []), compact]
        return entry, []
    entry["joined"] = [*entry.get("joined", []), code]
    j = _join(entry["finding"], review["service"], compact)
    return entry, [j] if j is not None else []
