"""Joining radiologists' reviews with the Finding scores they judge (pure logic).

The quality agent keeps one entry per "study_uid|service" in a table co-partitioned with both
topics; these functions are its state transitions (plain JSON values, so the table can persist
them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson

from streams.analytics.review_windows import Observation, Subject
from streams.contract.reasons import InputRejected, Reason
from streams.contract.schemas import EventKind, validate

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
