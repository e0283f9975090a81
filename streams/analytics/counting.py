"""Counting rules of the city statistics (pure logic): which stats keys an event counts in and
what it adds there.

A Finding is counted once per identity (study, service, model version), a Latency event once per
(study, service, model version) too, a dead letter once per origin (topic, partition, offset);
streams/analytics/exact_once.py makes each count land exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from streams.analytics.sketch import LogSketch
from streams.analytics.stats_keys import CITY, Dimension, stats_key
from streams.analytics.windows import labels
from streams.contract.cloudevents import parse_rfc3339
from streams.contract.events import STAGES

COUNTERS = ("studies", "findings", "ok", "positives", "technical_defect", "not_applicable",
            "deadletters")


def finding_identity(finding: Mapping[str, Any]) -> str:
    model = finding.get("model") or {}
    return f"{finding['study_uid']}|{finding['service']}|{model.get('version', '')}"


def is_positive(finding: Mapping[str, Any]) -> bool:
    return finding["status"] == "ok" and any(f.get("positive") for f in finding["findings"])


def dimensions(event: Mapping[str, Any]) -> list[tuple[Dimension, str]]:
    dims: list[tuple[Dimension, str]] = [(
        "city", CITY), ("hospital", event["hospital_id"])]
    if event.get("device_id"):
        dims.append(("device", event["device_id"]))
    dims.append(("service", event["service"]))
    return dims


def event_time(event: Mapping[str, Any]) -> datetime:
    return parse_rfc3339(str(event["produced_at"]))


def finding_contributions(finding: Mapping[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """(stats key, counter increments) for one Finding, `studies` not included (that depends on
    what was counted before, see `plan_finding`)."""
    status = finding["status"]
    base = {"findings": 1, status: 1}
    if is_positive(finding):
        base["positives"] = 1
    out: list[tuple[str, dict[str, int]]] = []
    for window, window_label in labels(event_time(finding)):
        for dimension, value in dimensions(finding):
            out.append((stats_key(window, window_label, dimension, value), dict(base)))
        for item in finding["findings"] if status == "ok" else ():
            delta = {"findings": 1, "ok": 1}
            if item.get("positive"):
                delta["positives"] = 1
            out.append((stats_key(window, window_label, "finding", item["code"]), delta))
    return out


def add_counts(counts: Mapping[str, int] | None, delta: Mapping[str, int]) -> dict[str, int]:
    out = dict(counts or {})
    for k, v in delta.items():
        out[k] = out.get(k, 0) + v
    return out


def latency_identity(event: Mapping[str, Any]) -> str:
    model = event.get("model") or {}
    return f"{event['study_uid']}|{event['service']}|{model.get('version', '')}"


def add_latency(value: Mapping[str, Any] | None, event: Mapping[str, Any]) -> dict[str, Any]:
    """A latency cell's payload after one Latency event: sketches of end-to-end time, each
    stage, and time to result (acquisition to result) by priority."""
    payload = own_latency(value)
    fold_latency(payload, event)
    return payload


def own_latency(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of a latency cell's payload that shares nothing with `value`, to fold into."""
    value = value or {}
    out: dict[str, Any] = {}
    if value.get("e"):
        out["e"] = LogSketch.json_copy(value["e"])
    out["s"] = {k: LogSketch.json_copy(v) for k, v in value.get("s", {}).items()}
    out["p"] = {k: LogSketch.json_copy(v) for k, v in value.get("p", {}).items()}
    return out


def fold_latency(payload: dict[str, Any], event: Mapping[str, Any]) -> None:
    """Add one Latency event to a payload the caller owns (see own_latency), in place."""

    def put(sketches: dict[str, Any], key: str, x: float) -> None:
        if sketches.get(key):
            LogSketch.json_add_into(sketches[key], float(x))
        else:
            sketches[key] = LogSketch.json_add(None, float(x))

    put(payload, "e", event["end_to_end_s"])
    for stage in STAGES:
        put(payload["s"], stage, event["stages"][stage])
    put(payload["p"], event["priority"], event["acquisition_to_result_s"])

