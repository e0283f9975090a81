"""Pure arithmetic and formatting of benchmark results: no Kafka, no Triton, no clock.

A run is a list of scenario results (plain dicts, JSON as written) plus the machine; the ratios
the performance issue sets as targets are computed here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: The targets from the performance issue, each as (ratio key, comparison, bound).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("radstream_over_triton_reference", ">=", 0.8),
    ("radstream_over_naive_reference", ">=", 10.0),
    ("radstream_identity_studies_per_s", ">=", 5000.0),
    ("half_load_p99_over_p50", "<=", 3.0),
    ("soak_rss_growth", "<=", 0.05),
)

#: Keys every scenario result carries (the smoke test checks them).
SCENARIO_KEYS = ("name", "kind", "model", "studies", "studies_per_s", "latency_s",
                 "mean_triton_batch", "cpu_s_per_study", "peak_rss_bytes", "notes")


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank) and the mean; None when there are no values."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99),
            "mean": sum(ordered) / len(ordered)}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def mean_batch(inferences: float, executions: float) -> float | None:
    """Triton's mean executed batch: nv_inference_count / nv_inference_exec_count deltas."""
    return inferences / executions if executions > 0 else None


def per_study(value: float | None, studies: int) -> float | None:
    return value / studies if value is not None and studies > 0 else None


def growth(first: float | None, last: float | None) -> float | None:
    return (last - first) / first if first and last is not None else None


def growth_after(samples: Sequence[Sequence[float]], warm_s: float) -> float | None:
    """RSS growth from the first (time, rss) sample at least `warm_s` into the soak to the last:
    with per-study state kept for a horizon, memory first fills to rate x horizon, and a leak
    is growth after that. None when the soak is not longer than `warm_s`."""
    if not samples:
        return None
    t0 = samples[0][0]
    later = [s for s in samples if s[0] - t0 >= warm_s]
    return growth(later[0][1], samples[-1][1]) if len(later) > 1 else None


def _find(results: Sequence[Mapping[str, Any]], kind: str, model: str,
          workers: int = 1) -> Mapping[str, Any] | None:
    for r in results:
        if r["kind"] == kind and r["model"] == model and r.get("workers", 1) == workers:
            return r
    return None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(results: Sequence[Mapping[str, Any]], reference: str,
           identity: str) -> dict[str, float | None]:
    """The issue's target ratios, from scenarios measured in the same run."""
    def speed(kind: str, model: str, workers: int = 1) -> float | None:
        r = _find(results, kind, model, workers)
        return float(r["studies_per_s"]) if r else None

    half = _find(results, "radstream_half_load", reference)
    p50 = half["latency_s"]["p50"] if half else None
    p99 = half["latency_s"]["p99"] if half else None
    soak = half.get("rss_growth") if half else None
    from_start = half.get("rss_growth_from_start") if half else None
    return {
        "radstream_over_triton_reference": _div(speed("radstream", reference),
                                                speed("triton_alone", reference)),
        "radstream_over_naive_reference": _div(speed("radstream", reference),
                                               speed("naive", reference)),
        "radstream_identity_studies_per_s": speed("radstream", identity),
        "radstream_over_naive_identity": _div(speed("radstream", identity),
                                              speed("naive", identity)),
        "radstream_over_triton_identity": _div(speed("radstream", identity),
                                               speed("triton_alone", identity)),
        "half_load_p99_over_p50": _div(p99, p50),
        "soak_rss_growth": soak,
        "soak_rss_growth_from_start": from_start,
        "two_workers_over_one_reference": _div(speed("radstream", reference, 2),
                                               speed("radstream", reference)),
        "two_workers_over_one_identity": _div(speed("radstream", identity, 2),
                                              speed("radstream", identity)),
    }


def verdicts(values: Mapping[str, float | None]) -> dict[str, bool | None]:
    """Whether each target is met (None: not measured in this run)."""
    out: dict[str, bool | None] = {}
    for key, op, bound in TARGETS:
        v = values.get(key)
        out[key] = None if v is None else (v >= bound if op == ">=" else v <= bound)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: Sequence[Mapping[str, Any]], values: Mapping[str, float | None]) -> str:
    """The human-readable summary `make bench` prints."""
    head = (f"{'scenario':<34} {'model':<11} {'studies':>7} {'studies/s':>10} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'p99 ms':>8} {'batch':>6} {'cpu ms/st':>9} {'triton ms/st':>12} "
            f"{'rss MiB':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lat = r["latency_s"]
        ms = {k: None if lat.get(k) is None else lat[k] * 1000 for k in ("p50", "p95", "p99")}
        cpu = r.get("cpu_s_per_study")
        tcpu = r.get("triton_cpu_s_per_study")
        rss = r.get("peak_rss_bytes")
        lines.append(
            f"{r['name']:<34} {r['model']:<11} {r['studies']:>7} "
            f"{_fmt(r['studies_per_s'], '.1f'):>10} {_fmt(ms['p50'], '.1f'):>8} "
            f"{_fmt(ms['p95'], '.1f'):>8} {_fmt(ms['p99'], '.1f'):>8} "
            f"{_fmt(r.get('mean_triton_batch'), '.1f'):>6} "
            f"{_fmt(None if cpu is None else cpu * 1000, '.2f'):>9} "
            f"{_fmt(None if tcpu is None else tcpu * 1000, '.2f'):>12} "
            f"{_fmt(None if rss is None else rss / 2**20, '.0f'):>8}")
    lines.append("")
    met = verdicts(values)
    bounds = {k: f"{op} {b:g}" for k, op, b in TARGETS}
    for key, value in values.items():
        mark = {True: "met", False: "NOT met", None: ""}[met.get(key)] if key in met else ""
        target = f"(target {bounds[key]})" if key in bounds else ""
        lines.append(f"{key:<36} {_fmt(value, '.3f'):>10}  {target} {mark}".rstrip())
    return "\n".join(lines)
