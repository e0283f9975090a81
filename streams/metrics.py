"""Prometheus metrics for the workers, built in a factory that takes the registry.

Conventions: `radstream_` namespace, base units (`_seconds`), `_total` counters, and labels
drawn from small fixed sets (service, status, stage, priority, reason). Never a study, patient,
hospital or device identifier: those are unbounded and some are sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Labels any radstream metric may carry. The metric-naming test enforces this list.
ALLOWED_LABELS = frozenset({"service", "status", "stage", "priority", "reason", "model",
                            # topic: names come from streams/contract/topics.py, a small fixed set.
                            "topic",
                            # finding: catalogued finding codes; kind: quality alert kinds.
                            "finding", "kind"})


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 900.0, 3600.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Metrics:
    studies_received: Counter
    work_items: Counter
    findings: Counter
    deadletters: Counter
    batch_size: Histogram
    stage_seconds: Histogram
    end_to_end_seconds: Histogram
    triton_retries: Counter
    quality_reviews: Counter
    quality_reviews_unmatched: Counter
    quality_auc: Gauge
    quality_sensitivity: Gauge
    quality_specificity: Gauge
    quality_alerts: Counter
    technical_defect_ratio: Gauge
    consumer_lag: Gauge
    triton_circuit: Gauge
    triton_circuit_opens: Counter


def create_metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(
        studies_received=Counter(
            "radstream_studies_received_total",
            "StudyAnnounced events consumed by the router.", registry=registry),
        work_items=Counter(
            "radstream_work_items_total",
            "Studies routed to an AI service.", ["service"], registry=registry),
        findings=Counter(
            "radstream_findings_total",
            "Findings published, by service and status.", ["service", "status"],
            registry=registry),
        deadletters=Counter(
            "radstream_deadletters_total",
            "Records sent to the dead-letter topic, by reason code.", ["reason"],
            registry=registry),
        batch_size=Histogram(
            "radstream_inference_batch_size",
            "Studies per inference call sent to Triton.", ["service"],
            buckets=_BATCH_BUCKETS, registry=registry),
        stage_seconds=Histogram(
            "radstream_stage_duration_seconds",
            "Time a study spends in each pipeline stage.", ["service", "stage"],
            buckets=_LATENCY_BUCKETS, registry=registry),
        end_to_end_seconds=Histogram(
            "radstream_end_to_end_seconds",
            "From the hospital's published_at to the Finding, by priority.",
            ["service", "priority"], buckets=_LATENCY_BUCKETS, registry=registry),
        triton_retries=Counter(
            "radstream_triton_retries_total",
            "Inference calls retried after a Triton error.", ["model"], registry=registry),
        quality_reviews=Counter(
            "radstream_quality_reviews_total",
            "Radiologist reviews joined with the AI score they judge.", ["service", "finding"],
            registry=registry),
        quality_reviews_unmatched=Counter(
            "radstream_quality_reviews_unmatched_total",
            "Reviews forgotten after RADSTREAM_REVIEW_HORIZON_S without a Finding to judge.",
            ["service"], registry=registry),
        quality_auc=Gauge(
            "radstream_quality_auc",
            "ROC AUC against radiologists over the last N reviews.", ["service", "finding"],
            registry=registry),
        quality_sensitivity=Gauge(
            "radstream_quality_sensitivity_ratio",
            "Sensitivity at the operating threshold over the last N reviews.",
            ["service", "finding"], registry=registry),
        quality_specificity=Gauge(
            "radstream_quality_specificity_ratio",
            "Specificity at the operating threshold over the last N reviews.",
            ["service", "finding"], registry=registry),
        quality_alerts=Counter(
            "radstream_quality_alerts_total",
            "QualityAlerts raised (AUC below floor, defect rate high).", ["service", "kind"],
            registry=registry),
        technical_defect_ratio=Gauge(
            "radstream_technical_defect_ratio",
            "Share of technical_defect Findings over the last K Findings.", ["service"],
            registry=registry),
        consumer_lag=Gauge(
            "radstream_consumer_lag_records",
            "Records in this worker's assigned partitions not yet committed, by source topic.",
            ["topic"], registry=registry),
        triton_circuit=Gauge(
            "radstream_triton_circuit_state",
            "Circuit breaker towards Triton: 0 closed, 1 half-open, 2 open.", ["model"],
            registry=registry),
        triton_circuit_opens=Counter(
            "radstream_triton_circuit_opens_total",
            "Times the circuit towards Triton opened.", ["model"], registry=registry),
    )
