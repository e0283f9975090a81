"""Builders for the events radstream produces (pure: no clock reads, no I/O).

Each returns the JSON body as a dict; `streams.contract.schemas` validates it and the agents add the
CloudEvents headers when they publish.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from streams.contract.catalog import NOT_APPLICABLE_SERVICE, ServiceSpec
from streams.contract.reasons import Reason

#: Bytes of a bad payload kept in its DeadLetter record: enough to debug, small enough to be safe.
EXCERPT_BYTES = 256
#: The Latency event's stages, in pipeline order (seconds each; schemas/latency.v1.json).
STAGES = ("queue", "fetch", "preprocess", "infer", "publish")
#: Hospital id used when a dead-lettered event has none we can trust.
UNKNOWN = "unknown"


def _study_fields(study: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "study_uid": study["study_uid"],
        "hospital_id": study["hospital_id"],
        "device_id": study["device_id"],
        "priority": study["priority"],
        "modality": study["modality"],
        "body_part": study["body_part"],
    }


def finding_ok(study: Mapping[str, Any], spec: ServiceSpec, scores: Sequence[float],
               produced_at: str, measurements: Sequence[float] | None = None) -> dict[str, Any]:
    """A Finding with one entry per output of the service's model; measurement services also
    report the measured value (finite values only) with the finding's unit."""
    findings = []
    for f in spec.findings:
        score = min(1.0, max(0.0, float(scores[f.output_index])))
        item: dict[str, Any] = {"code": f.code, "display": f.display, "score": round(score, 6),
                                "positive": score >= f.threshold, "threshold": f.threshold}
        if measurements is not None and f.unit:
            value = float(measurements[f.output_index])
            if math.isfinite(value):
                item["measurement"] = {"value": round(value, 4), "unit": f.unit}
        findings.append(item)
    return {**_study_fields(study), "service": spec.id,
            "model": {"name": spec.model, "version": spec.model_version},
            "status": "ok", "findings": findings, "produced_at": produced_at}


def finding_technical_defect(study: Mapping[str, Any], spec: ServiceSpec, reason: str,
                             produced_at: str, detail: str = "") -> dict[str, Any]:
    """The outcome for a study whose images this service cannot read: a reason, no guess."""
    body = {**_study_fields(study), "service": spec.id,
            "model": {"name": spec.model, "version": spec.model_version},
            "status": "technical_defect", "findings": [], "defect_reason": reason,
            "produced_at": produced_at}
    if detail:
        body["defect_detail"] = detail[:1000]
    return body


def finding_not_applicable(study: Mapping[str, Any], produced_at: str) -> dict[str, Any]:
    """The outcome for a study that no AI service reads, so it is accounted for, not lost."""
    return {**_study_fields(study), "service": NOT_APPLICABLE_SERVICE,
            "model": {"name": "router", "version": "1"},
            "status": "not_applicable", "findings": [], "produced_at": produced_at}


def latency(study: Mapping[str, Any], spec: ServiceSpec, stages: Mapping[str, float],
            end_to_end_s: float, acquisition_to_result_s: float, batch_size: int,
            produced_at: str) -> dict[str, Any]:
    return {
        "study_uid": study["study_uid"], "service": spec.id,
        "model": {"name": spec.model, "version": spec.model_version},
        "hospital_id": study["hospital_id"], "device_id": study["device_id"],
        "priority": study["priority"],
        "stages": {k: round(max(0.0, float(v)), 6) for k, v in stages.items()},
        "end_to_end_s": round(max(0.0, end_to_end_s), 6),
        "acquisition_to_result_s": round(max(0.0, acquisition_to_result_s), 6),
        "batch_size": batch_size, "produced_at": produced_at,
    }


def deadletter(reason: Reason, detail: str, *, topic: str, partition: int, offset: int,
               key: bytes | str | None, payload: bytes, produced_at: str,
               service: str | None = None) -> dict[str, Any]:
    """A DeadLetter record: why, where it came from, and a short excerpt of what arrived."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    record: dict[str, Any] = {
        "reason": reason.value, "detail": detail[:1000],
        "origin": {"topic": topic, "partition": partition, "offset": offset},
        "key": key[:256] if key is not None else None,
        "payload_excerpt": payload[:EXCERPT_BYTES].decode("utf-8", "replace"),
        "produced_at": produced_at,
    }
    if service is not None:
        record["service"] = service
    return record
