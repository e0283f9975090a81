"""Sliding windows of the quality monitor (pure logic): reviewed studies and technical defects
per subject, their summaries, and the alert latch each window carries."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.analytics.agreement import auc_with_ci, sensitivity_specificity


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


@dataclass(frozen=True)
class Subject:
    """What an alert or a window is about: a service, a finding code, optionally a device."""

    service: str
    finding: str | None = None
    device_id: str | None = None


@dataclass
class Latch:
    """Alert state of one (rule, subject): raised or not, and observations since raised."""

    raised: bool = False
    since: int = 0


@dataclass
class ReviewWindow:
    reviews: deque[Observation]
    latch: Latch = field(default_factory=Latch)


@dataclass
class DefectWindow:
    defects: deque[tuple[bool, str]]
    latch: Latch = field(default_factory=Latch)

    def rate(self) -> float | None:
        return (sum(d for d, _ in self.defects) / len(self.defects)) if self.defects else None
