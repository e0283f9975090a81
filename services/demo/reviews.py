"""Simulated radiologists: Review events for a sample of studies, from the planted ground truth.

Why: the quality monitor compares AI scores with radiologists' reads of a periodic sample of
studies. In the simulated city the phantom generators know the truth (CityTruth.labels); a
simulated radiologist reads a configurable share of studies and disagrees with that truth with
a configurable probability, as real readers do. Reviewer refs are keyed pseudonyms of a small
reviewer pool; no patient data is involved.

`simulate_city_reviews` is pure (seeded); `ReviewPublisher` sends the bodies to radiology.reviews.v1
keyed by study_uid with CloudEvents headers, each checked against schemas/review.v1.json.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from confluent_kafka import Producer

from services.synth.city import CityTruth
from streams.contract import topics
from streams.contract.cloudevents import ce_headers, utc_now_rfc3339
from streams.contract.schemas import EventKind, validate


@dataclass(frozen=True)
class ReviewConfig:
    #: Share of studies a radiologist reads (the programme samples about 80 per service).
    sample_fraction: float = 0.1
    #: Probability that the radiologist's read differs from the planted truth.
    disagreement_rate: float = 0.02
    #: Size of the simulated reviewer pool.
    reviewers: int = 12
    seed: int = 1

    def __post_init__(self) -> None:
        if not (0.0 <= self.sample_fraction <= 1.0 and 0.0 <= self.disagreement_rate <= 1.0
                and self.reviewers >= 1):
            raise ValueError("0 <= sample_fraction, disagreement_rate <= 1 and reviewers >= 1")


def reviewer_ref(seed: int, index: int) -> str:
    """Stable pseudonym of simulated reviewer ``index`` (HMAC, like the publisher's refs)."""
    key = f"radstream-demo-reviewers-{seed}".encode()
    return hmac.new(key, f"reviewer\x00{index}".encode(), hashlib.sha256).hexdigest()[:32]


def simulate_city_reviews(truths: Iterable[CityTruth], cfg: ReviewConfig, *,
                          reviewed_at: str) -> list[dict[str, Any]]:
    """Reviews for a sample of the simulated city's readable studies: one review per finding
    of the study's service, read from the planted labels with the configured disagreement.

    Each study's draws come from its own stream (seed, study_uid), so whether a study is
    sampled and how it is read does not depend on the other studies.
    """
    reviews = []
    for truth in truths:
        if truth.defect or not truth.labels:
            continue
        rng = random.Random(f"{cfg.seed}|{truth.study_uid}")
        if rng.random() >= cfg.sample_fraction:
            continue
        reviewer = reviewer_ref(cfg.seed, rng.randrange(cfg.reviewers))
        for code, planted in sorted(truth.labels.items()):
            disagrees = rng.random() < cfg.disagreement_rate
            reviews.append({"study_uid": truth.study_uid, "service": truth.service,
                            "code": code, "radiologist_positive": bool(planted) != disagrees,
                            "reviewer_ref": reviewer, "reviewed_at": reviewed_at})
    return reviews


def producer_config(bootstrap: str) -> dict[str, Any]:
    """librdkafka settings of the review producer. The partitioner puts a study's Review in
    the partition of its Finding, where the quality monitor's join entry lives."""
    return {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, **topics.LIBRDKAFKA_PARTITIONER}


class ReviewPublisher:
    """Sends Review events; `flush()` returns how many the broker acknowledged."""

    def __init__(self, bootstrap: str, source: str = "radstream/demo/reviews") -> None:
        self._producer = Producer(producer_config(bootstrap))
        self._source = source
        self.delivered = 0
        self.failed = 0

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1

    def publish(self, review: dict[str, Any]) -> None:
        validate(EventKind.REVIEW, review)
        headers: list[tuple[str, str | bytes | None]] = [
            *ce_headers(topics.REVIEWS.event_type, self._source)]
        self._producer.produce(topics.REVIEWS.name, key=review["study_uid"].encode(),
                               value=orjson.dumps(review), headers=headers,
                               on_delivery=self._on_delivery)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        self._producer.flush(timeout_s)
        return self.delivered

    def __enter__(self) -> ReviewPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush()


def publish_reviews(bootstrap: str, reviews: Iterable[dict[str, Any]]) -> int:
    """Send ``reviews`` and wait for the broker; returns how many were acknowledged."""
    with ReviewPublisher(bootstrap) as publisher:
        for review in reviews:
            publisher.publish(review)
        return publisher.flush()


def run(args: argparse.Namespace) -> int:
    """`radstream reviews FOLDER`: review a sample of the studies a `radstream synth` wrote."""
    from services.synth.city import load_city_truth
    from streams.settings import Settings

    cfg = ReviewConfig(sample_fraction=args.fraction, disagreement_rate=args.disagreement,
                       seed=args.seed)
    reviews = simulate_city_reviews(load_city_truth(Path(args.folder)), cfg,
                                    reviewed_at=utc_now_rfc3339())
    delivered = publish_reviews(Settings.from_env().kafka, reviews)
    print(f"published {delivered}/{len(reviews)} reviews to {topics.REVIEWS.name}")
    return 0 if delivered == len(reviews) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reviews", help="simulate radiologists reviewing a sample of studies")
    p.add_argument("folder", help="a folder written by `radstream synth` (city_truth.jsonl)")
    p.add_argument("--fraction", type=float, default=ReviewConfig.sample_fraction,
                   help="share of studies reviewed")
    p.add_argument("--disagreement", type=float, default=ReviewConfig.disagreement_rate,
                   help="probability a radiologist's read differs from the planted truth")
    p.add_argument("--seed", type=int, default=ReviewConfig.seed)
    p.set_defaults(func=run)
